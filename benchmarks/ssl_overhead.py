"""What the structure-sensitive loss costs: a DeepLabV2 training step with the loss "off" vs "paper".

A training step is forward + loss + backward + SGD step. The structure-sensitive loss adds an argmax,
the joints of two label maps and their heatmaps (paper Section 4.2), none of which needs a
gradient. Prints median step times, the overhead in percent (goal: <= 3%), and the loss alone
(forward + backward of the loss on fixed logits) per mode.

    python benchmarks/ssl_overhead.py                       # CPU, width 0.25, batch 2, 161x161
    python benchmarks/ssl_overhead.py --device cuda --width 1 --batch 10 --size 321

On CUDA the model runs under bf16 autocast. Each sample is one call timed by
torch.utils.benchmark.Timer (benchmarks/_common.py), which synchronises the device.
"""
from __future__ import annotations

import argparse
import statistics

import torch

from _common import device_info, seconds_per_call, timing_note, write_result
from lipstudy.losses import MODES, structure_sensitive_loss
from lipstudy.models import build_model
from lipstudy.runtime import precision_plan


def blocky_targets(batch: int, size: int, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """Label maps made of 8x8-pixel blocks of random ids, with an ignore border like a padded crop."""
    cells = -(-size // 8)
    coarse = torch.randint(0, num_classes, (batch, cells, cells), generator=generator)
    target = coarse.repeat_interleave(8, 1).repeat_interleave(8, 2)[:, :size, :size].clone()
    target[:, :, size - size // 10:] = 255
    return target.to(torch.uint8)


def once(fn) -> float:
    """Seconds of one call: a sample of the interleaved comparisons below, whose medians are taken."""
    return seconds_per_call(fn, number=1, warmup=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=161)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per mode")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (fewer than the cores makes timings steadier on a shared machine)")
    parser.add_argument("--amp", default="auto", choices=("auto", "bf16", "off"))
    parser.add_argument("--out", help="result file (default results/benchmarks/ssl_overhead.json)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    plan = precision_plan(device, args.amp, False)
    use_bf16 = plan.autocast
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, args.size, args.size, generator=gen).to(device)
    target = blocky_targets(args.batch, args.size, 20, gen).to(device)

    # One model per mode, same initial weights, steps interleaved so drift hits both alike.
    models, opts = {}, {}
    for mode in ("off", "paper"):
        torch.manual_seed(0)
        models[mode] = build_model("deeplabv2", width=args.width).to(device).train()
        opts[mode] = torch.optim.SGD(models[mode].parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)

    def step(mode: str) -> None:
        with plan.autocast_context(device):
            logits = models[mode](images)["out"]
        loss = structure_sensitive_loss(logits.float(), target, mode=mode)
        opts[mode].zero_grad(set_to_none=True)
        loss.backward()
        opts[mode].step()

    times: dict[str, list[float]] = {"off": [], "paper": []}
    for i in range(args.warmup + args.steps):
        for mode in ("off", "paper") if i % 2 == 0 else ("paper", "off"):
            t = once(lambda: step(mode))
            if i >= args.warmup:
                times[mode].append(t)

    # The loss alone, on fixed logits of the same shape.
    logits = torch.randn(args.batch, 20, args.size, args.size, generator=gen).to(device).requires_grad_()

    def loss_only(mode: str) -> None:
        structure_sensitive_loss(logits, target, mode=mode).backward()
        logits.grad = None

    loss_times = {mode: [] for mode in MODES}
    for i in range(args.warmup + 5 * args.steps):
        for mode in MODES:
            t = once(lambda: loss_only(mode))
            if i >= args.warmup:
                loss_times[mode].append(t)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    off, paper = statistics.median(times["off"]), statistics.median(times["paper"])
    print(f"device {name}, deeplabv2 width {args.width}, batch {args.batch}, {args.size}x{args.size}, "
          f"bf16 autocast {use_bf16}, {args.steps} timed steps per mode")
    # Steps of the two modes run back to back, so the ratio within a pair cancels slow drift in
    # machine load; its median is the steadier overhead figure on a shared machine.
    paired = statistics.median(p / o for p, o in zip(times["paper"], times["off"]))
    q_off = statistics.quantiles(times["off"], n=4)
    print(f"training step, median: off {off * 1e3:.1f} ms (IQR {q_off[0] * 1e3:.0f}-{q_off[2] * 1e3:.0f}), "
          f"paper {paper * 1e3:.1f} ms, overhead {100 * (paper - off) / off:+.2f}%; "
          f"median paired overhead {100 * (paired - 1):+.2f}% (goal <= 3%)")
    med = {mode: statistics.median(v) for mode, v in loss_times.items()}
    print("loss forward+backward alone, median: "
          + ", ".join(f"{mode} {med[mode] * 1e3:.2f} ms" for mode in MODES))
    print(f"joint term (paper - off) {(med['paper'] - med['off']) * 1e3:.2f} ms = "
          f"{100 * (med['paper'] - med['off']) / off:.2f}% of an 'off' training step "
          "(steadier than the step difference, which includes the noise of two big medians)")
    write_result("ssl_overhead", {
        **device_info(device), "model": "deeplabv2", "width": args.width, "batch": args.batch,
        "input_size": args.size, "bf16_autocast": use_bf16, "timed_steps": args.steps,
        "step_s_median": {"off": off, "paper": paper}, "step_overhead": (paper - off) / off,
        "paired_step_overhead": paired - 1, "loss_only_s_median": med,
        "joint_term_fraction_of_step": (med["paper"] - med["off"]) / off,
        "timing": timing_note(number=1, warmup=0) + " per sample; modes interleaved, medians reported"}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
