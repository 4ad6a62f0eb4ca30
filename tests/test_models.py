"""The four baselines (lipstudy.models): output contract, parameter counts of the published
architectures, torchvision weight mapping, gradients, attention weights."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lipstudy.models import MODEL_NAMES, build_model, num_parameters
from lipstudy.models.fcn import upsampler
from lipstudy.models.vgg import bilinear_kernel, pad_to_multiple, scaled

TINY = 0.125  # width for fast CPU tests

# torchvision's make_layers config "D" (VGG-16); "M" is a max-pool.
TV_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def torchvision_vgg16_state(batch_norm: bool, gen: torch.Generator | None,
                            fc: bool = True) -> dict[str, torch.Tensor]:
    """A state dict with torchvision's key names and shapes (vgg16 / vgg16_bn), written out here
    independently of lipstudy's mapping. Random values when ``gen`` is given; otherwise cheap
    stride-0 constant tensors (right shapes, tiny files) for the error tests."""
    def t(*shape):
        if gen is None:
            return torch.zeros(()).expand(*shape)
        return torch.randn(*shape, generator=gen)

    state: dict[str, torch.Tensor] = {}
    i, c_in = 0, 3
    for v in TV_CFG:
        if v == "M":
            i += 1
            continue
        state[f"features.{i}.weight"], state[f"features.{i}.bias"] = t(v, c_in, 3, 3), t(v)
        if batch_norm:
            state[f"features.{i + 1}.weight"] = t(v)
            state[f"features.{i + 1}.bias"] = t(v)
            state[f"features.{i + 1}.running_mean"] = t(v)
            state[f"features.{i + 1}.running_var"] = t(v).abs() + 0.5
            state[f"features.{i + 1}.num_batches_tracked"] = torch.tensor(1000 + i)
            i += 3
        else:
            i += 2
        c_in = v
    if fc:
        state["classifier.0.weight"], state["classifier.0.bias"] = t(4096, 512 * 7 * 7), t(4096)
        state["classifier.3.weight"], state["classifier.3.bias"] = t(4096, 4096), t(4096)
        state["classifier.6.weight"], state["classifier.6.bias"] = t(1000, 4096), t(1000)
    return state


def ordered(state: dict[str, torch.Tensor], suffix: str) -> list[str]:
    keys = [k for k in state if k.startswith("features.") and k.endswith(suffix)]
    return sorted(keys, key=lambda k: int(k.split(".")[1]))


# ----------------------------------------------------------------------------------------------
# output contract


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("batch,size", [(1, (97, 131)), (2, (33, 47))])
def test_output_shapes_eval_and_train(name, batch, size):
    torch.manual_seed(0)
    model = build_model(name, num_classes=7, width=TINY)
    x = torch.randn(batch, 3, *size)
    model.eval()
    with torch.no_grad():
        y = model(x)
    assert isinstance(y, torch.Tensor) and y.shape == (batch, 7, *size)
    assert torch.isfinite(y).all()
    model.train()
    out = model(x)
    assert set(out) == {"out", "aux"}
    assert out["out"].shape == (batch, 7, *size)
    n_aux = 3 if name == "attention" else 0
    assert len(out["aux"]) == n_aux
    assert all(a.shape == (batch, 7, *size) for a in out["aux"])


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as err:
        build_model("pspnet")
    for name in MODEL_NAMES:
        assert name in str(err.value)
    assert set(MODEL_NAMES) == {"segnet", "fcn8s", "deeplabv2", "attention"}


def test_width_thins_every_layer():
    model = build_model("deeplabv2", width=TINY)
    assert model.backbone.stage_channels == ((8, 8), (16, 16), (32, 32, 32), (64, 64, 64), (64, 64, 64))
    assert model.aspp[0].fc6.out_channels == 128  # 1024 * 0.125
    assert scaled(64, 0.01) == 8 and scaled(4096, 0.25) == 1024
    with pytest.raises(ValueError):
        scaled(64, 0)


# ----------------------------------------------------------------------------------------------
# parameter counts at width 1, 21 classes (PASCAL VOC), derived by hand from the layer lists.
#
# VGG-16 convs (3x3, weight + bias): 64: 3*64*9+64 = 1,792; 64*64*9+64 = 36,928;
#   128: 73,856 + 147,584; 256: 295,168 + 2 * 590,080; 512: 1,180,160 + 2 * 2,359,808;
#   conv5: 3 * 2,359,808  ->  total 14,714,688 (torchvision vgg16 features).
VGG16_CONVS = 14_714_688
# SegNet: encoder convs 14,714,688 + encoder BN 2 * (2*64 + 2*128 + 3*256 + 6*512) = 8,448;
#   decoder convs: 3 * 2,359,808 (conv5_x_D) + 2 * 2,359,808 + 1,179,904 (conv4_x_D, 512->256)
#   + 2 * 590,080 + 295,040 (conv3_x_D, 256->128) + 147,584 + 73,792 (conv2_x_D, 128->64)
#   + 36,928 (conv1_2_D) + 64*21*9+21 = 12,117 (conv1_1_D classifier) = 14,724,565;
#   decoder BN 2 * (3*512 + 2*512 + 256 + 2*256 + 128 + 128 + 64 + 64) = 7,424.
#   Total 29,455,125 (SegNet paper: 29.5M).
SEGNET = VGG16_CONVS + 8_448 + 14_724_565 + 7_424
# FCN-8s: fc6 7*7*512*4096 + 4096 = 102,764,544; fc7 4096*4096 + 4096 = 16,781,312;
#   score_fr 4096*21+21 = 86,037; score_pool4 512*21+21 = 10,773; score_pool3 256*21+21 = 5,397;
#   upscore2 / upscore_pool4 21*21*4*4 = 7,056 each; upscore8 21*21*16*16 = 112,896 (no bias).
#   Total 134,489,759 (~134M, the FCN-8s VGG-16 count).
FCN8S = VGG16_CONVS + 102_764_544 + 16_781_312 + 86_037 + 10_773 + 5_397 + 2 * 7_056 + 112_896
# DeepLabV2 ASPP-L: each branch fc6 3*3*512*1024 + 1024 = 4,719,616; fc7 1024*1024 + 1024 =
#   1,049,600; fc8 1024*21 + 21 = 21,525 -> 5,790,741 per branch, x4 = 23,162,964.
#   Total 37,877,652. (The ~20.5M figure is DeepLab-LargeFOV = one rate-12 branch.)
DEEPLABV2 = VGG16_CONVS + 4 * (4_719_616 + 1_049_600 + 21_525)
# Attention-to-scale: LargeFOV 14,714,688 + 4,719,616 + 1,049,600 + 21,525 = 20,505,429 (shared by
#   the three scales); attention conv 3*3*(3*1024)*512 + 512 = 14,156,288; conv 1x1 512*3 + 3 = 1,539.
ATTENTION = VGG16_CONVS + 4_719_616 + 1_049_600 + 21_525 + 14_156_288 + 1_539


@pytest.mark.parametrize("name,expected", [
    ("segnet", SEGNET), ("fcn8s", FCN8S), ("deeplabv2", DEEPLABV2), ("attention", ATTENTION)])
def test_parameter_counts_at_full_width(name, expected):
    with torch.device("meta"):  # shapes only: no memory, no init cost
        model = build_model(name, num_classes=21)
    assert num_parameters(model) == expected


def test_parameter_counts_layer_by_layer():
    """The per-layer figures of the derivation above, each against the layer that should have it
    (a total can come out right with two layers wrong; a layer cannot)."""
    with torch.device("meta"):
        seg, fcn, dl, att = (build_model(n, num_classes=21) for n in ("segnet", "fcn8s", "deeplabv2", "attention"))
    n = num_parameters
    assert n(fcn.backbone) == n(dl.backbone) == n(att.backbone) == VGG16_CONVS
    assert n(seg.encoder) == VGG16_CONVS + 8_448
    assert n(seg.classifier) == 64 * 21 * 9 + 21 == 12_117
    assert n(seg.decoders) == 14_724_565 - 12_117 + 7_424
    assert [n(m) for m in (fcn.fc6, fcn.fc7, fcn.score_fr, fcn.score_pool4, fcn.score_pool3)] == \
        [102_764_544, 16_781_312, 86_037, 10_773, 5_397]
    assert [n(m) for m in (fcn.upscore2, fcn.upscore_pool4, fcn.upscore8)] == [7_056, 7_056, 112_896]
    assert [b.fc6.dilation for b in dl.aspp] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    assert all((n(b.fc6), n(b.fc7), n(b.fc8)) == (4_719_616, 1_049_600, 21_525) for b in dl.aspp)
    assert att.head.fc6.dilation == (12, 12)
    assert (n(att.head.fc6), n(att.head.fc7), n(att.head.fc8)) == (4_719_616, 1_049_600, 21_525)
    assert (n(att.attention[0]), n(att.attention[3])) == (3 * 3 * 3 * 1024 * 512 + 512, 512 * 3 + 3)


# ----------------------------------------------------------------------------------------------
# small pieces with hand-computed answers


def test_bilinear_kernel_known_values():
    k = bilinear_kernel(2, 4)
    profile = torch.tensor([0.25, 0.75, 0.75, 0.25])
    assert torch.allclose(k[0, 0], profile[:, None] * profile[None, :])
    assert torch.equal(k[1, 1], k[0, 0])
    assert torch.equal(k[0, 1], torch.zeros(4, 4)) and torch.equal(k[1, 0], torch.zeros(4, 4))


@pytest.mark.parametrize("factor", [2, 8])
def test_fcn_upsampler_starts_as_bilinear(factor):
    x = torch.randn(1, 3, 6, 7, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        up = upsampler(3, factor)(x)
    ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    assert up.shape == ref.shape == (1, 3, 6 * factor, 7 * factor)
    f = factor  # borders differ (zero padding vs edge clamping); the interior is identical
    assert torch.allclose(up[..., f:-f, f:-f], ref[..., f:-f, f:-f], atol=1e-5)


def test_pad_to_multiple():
    x = torch.ones(1, 1, 33, 64)
    y = pad_to_multiple(x, 32)
    assert y.shape == (1, 1, 64, 64)
    assert y[..., :33, :].sum() == 33 * 64 and y[..., 33:, :].abs().sum() == 0
    assert pad_to_multiple(y, 32) is y


# ----------------------------------------------------------------------------------------------
# training behaviour


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=5, width=TINY).train()
    x = torch.randn(2, 3, 36, 44)
    target = torch.randint(0, 5, (2, 36, 44))
    target[:, :4] = 255
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    # Two steps: a layer that starts at zero (the attention model's last) passes no gradient to the
    # layer before it until it has taken a step.
    for _ in range(2):
        opt.zero_grad()
        out = model(x)
        loss = F.cross_entropy(out["out"], target, ignore_index=255)
        for aux in out["aux"]:
            loss = loss + F.cross_entropy(aux, target, ignore_index=255)
        loss.backward()
        opt.step()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_dropout_zero_makes_training_deterministic(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=5, width=TINY, dropout=0.0).train()
    # dropout=0 removes every dropout layer but the attention model's own (models.attention.ATTENTION_DROPOUT)
    kept = [n for n, m in model.named_modules() if isinstance(m, nn.Dropout)]
    assert kept == (["attention.2"] if name == "attention" else [])
    if kept:
        model.attention[2].p = 0.0
    x = torch.randn(2, 3, 36, 36)
    with torch.no_grad():
        a, b = model(x), model(x)
    assert torch.equal(a["out"], b["out"])
    assert all(torch.equal(u, v) for u, v in zip(a["aux"], b["aux"]))


@pytest.mark.parametrize("name", ["fcn8s", "deeplabv2", "attention"])
def test_default_dropout_is_active_in_training_only(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=5, width=TINY)
    assert sum(isinstance(m, nn.Dropout) and m.p == 0.5 for m in model.modules()) >= 2
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        assert not torch.equal(model.train()(x)["out"], model(x)["out"])
        assert torch.equal(model.eval()(x), model(x))


def test_attention_weights_sum_to_one_over_scales():
    torch.manual_seed(0)
    model = build_model("attention", num_classes=6, width=TINY).eval()
    x = torch.randn(2, 3, 81, 97)
    with torch.no_grad():
        parts = model.forward_parts(x)
        logits = model(x)
    w = parts["weights"]
    h, wd = parts["fused"].shape[-2:]
    assert w.shape == (2, 3, h, wd)
    assert (w >= 0).all()
    assert torch.allclose(w.sum(dim=1), torch.ones(2, h, wd), atol=1e-6)
    assert len(parts["per_scale"]) == 3
    manual = sum(w[:, s:s + 1] * parts["per_scale"][s] for s in range(3))
    assert torch.allclose(parts["fused"], manual, atol=1e-5)
    ref = F.interpolate(parts["fused"], size=(81, 97), mode="bilinear", align_corners=False)
    assert torch.allclose(logits, ref, atol=1e-6)
    # scale-1 features have stride 8 (ceil pooling, as Caffe): 81 -> 41 -> 21 -> 11
    assert (h, wd) == (11, 13)


# ----------------------------------------------------------------------------------------------
# torchvision-format ImageNet weights


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory):
    state = torchvision_vgg16_state(batch_norm=False, gen=torch.Generator().manual_seed(16))
    path = tmp_path_factory.mktemp("weights") / "vgg16.pth"
    torch.save(state, path)
    return path, state


def check_backbone(backbone: nn.Module, state: dict[str, torch.Tensor], batch_norm: bool) -> None:
    convs = [m for m in backbone.modules() if isinstance(m, nn.Conv2d)]
    conv_keys = [k for k in ordered(state, ".weight") if state[k].dim() == 4]
    assert len(convs) == len(conv_keys) == 13
    for conv, key in zip(convs, conv_keys):
        assert torch.equal(conv.weight, state[key]), key
        assert torch.equal(conv.bias, state[key.replace("weight", "bias")]), key
    if batch_norm:
        bns = [m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)]
        bn_keys = [k[: -len(".running_mean")] for k in ordered(state, ".running_mean")]
        assert len(bns) == len(bn_keys) == 13
        for bn, key in zip(bns, bn_keys):
            assert torch.equal(bn.weight, state[f"{key}.weight"]), key
            assert torch.equal(bn.bias, state[f"{key}.bias"]), key
            assert torch.equal(bn.running_mean, state[f"{key}.running_mean"]), key
            assert torch.equal(bn.running_var, state[f"{key}.running_var"]), key
            assert torch.equal(bn.num_batches_tracked, state[f"{key}.num_batches_tracked"]), key


def test_pretrained_fcn8s_gets_conv_and_fc_weights(vgg16_file):
    path, state = vgg16_file
    model = build_model("fcn8s", num_classes=21, pretrained=path)
    check_backbone(model.backbone, state, batch_norm=False)
    assert torch.equal(model.fc6.weight, state["classifier.0.weight"].view(4096, 512, 7, 7))
    assert torch.equal(model.fc6.bias, state["classifier.0.bias"])
    assert torch.equal(model.fc7.weight[:, :, 0, 0], state["classifier.3.weight"])
    assert torch.equal(model.fc7.bias, state["classifier.3.bias"])


@pytest.mark.parametrize("name", ["deeplabv2", "attention"])
def test_pretrained_deeplab_family_gets_decimated_fc(vgg16_file, name):
    path, state = vgg16_file
    model = build_model(name, num_classes=21, pretrained=path)
    check_backbone(model.backbone, state, batch_norm=False)
    fc6 = state["classifier.0.weight"].view(4096, 512, 7, 7)
    heads = list(model.aspp) if name == "deeplabv2" else [model.head]
    assert len(heads) == (4 if name == "deeplabv2" else 1)
    for head in heads:
        # every 4th filter, kernel rows/cols 0, 3, 6 (hand-indexed, not sliced like the code)
        rows = torch.tensor([0, 3, 6])
        expected = fc6[torch.arange(0, 4096, 4)][:, :, rows][:, :, :, rows]
        assert torch.equal(head.fc6.weight, expected)
        assert torch.equal(head.fc6.bias, state["classifier.0.bias"][0::4])
        assert torch.equal(head.fc7.weight[:, :, 0, 0], state["classifier.3.weight"][0::4, 0::4])
        assert torch.equal(head.fc7.bias, state["classifier.3.bias"][0::4])


def test_pretrained_segnet_gets_vgg16_bn_encoder(tmp_path):
    state = torchvision_vgg16_state(batch_norm=True, gen=torch.Generator().manual_seed(3), fc=False)
    # torchvision's vgg16_bn also has the classifier; SegNet ignores it (cheap placeholders here)
    state.update({k: v for k, v in torchvision_vgg16_state(True, None).items() if k.startswith("classifier")})
    path = tmp_path / "vgg16_bn.pth"
    torch.save(state, path)
    model = build_model("segnet", num_classes=20, pretrained=path)
    check_backbone(model.encoder, state, batch_norm=True)


def test_bad_pretrained_files_name_the_file_and_problem(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        build_model("deeplabv2", width=TINY, pretrained=missing)

    # Full-width models built on the meta device (shapes only) keep this test fast: every error
    # below is raised before a single weight is copied.
    def full_width(name, width=1.0):
        with torch.device("meta"):
            return build_model(name, width=width)

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth"):
        full_width("deeplabv2").load_pretrained(garbage)

    plain = tmp_path / "vgg16_plain.pth"
    torch.save(torchvision_vgg16_state(False, None), plain)
    with pytest.raises(ValueError, match=r"vgg16_plain\.pth.*VGG-16-BN"):
        full_width("segnet").load_pretrained(plain)
    with pytest.raises(ValueError, match=r"vgg16_plain\.pth.*width=1\.0"):
        build_model("fcn8s", width=0.5, pretrained=plain)

    no_fc = tmp_path / "features_only.pth"
    torch.save(torchvision_vgg16_state(False, None, fc=False), no_fc)
    with pytest.raises(ValueError, match=r"features_only\.pth.*classifier\.0\.weight"):
        full_width("attention").load_pretrained(no_fc)

    reshaped = torchvision_vgg16_state(False, None)
    reshaped["features.0.weight"] = torch.zeros(64, 3, 5, 5)
    bad_shape = tmp_path / "bad_shape.pth"
    torch.save(reshaped, bad_shape)
    with pytest.raises(ValueError, match=r"bad_shape\.pth.*features\.0\.weight"):
        full_width("fcn8s").load_pretrained(bad_shape)

    not_dict = tmp_path / "list.pth"
    torch.save([torch.zeros(3)], not_dict)
    with pytest.raises(ValueError, match=r"list\.pth.*state dict"):
        full_width("fcn8s").load_pretrained(not_dict)


def test_atrous_scale_scales_the_dilation_rates():
    """ASPP's 6/12/18/24 and LargeFOV's 12, scaled (the cpu profile's 128-px crops: x 128/321)."""
    dl = build_model("deeplabv2", width=0.0625, atrous_scale=0.4)
    assert [b.fc6.dilation for b in dl.aspp] == [(2, 2), (5, 5), (7, 7), (10, 10)]
    assert [b.fc6.padding for b in dl.aspp] == [(2, 2), (5, 5), (7, 7), (10, 10)]  # same-size output
    assert build_model("attention", width=0.0625, atrous_scale=0.4).head.fc6.dilation == (5, 5)
    assert [b.fc6.dilation[0] for b in build_model("deeplabv2", width=0.0625).aspp] == [6, 12, 18, 24]
    assert [b.fc6.dilation[0] for b in build_model("deeplabv2", width=0.0625, atrous_scale=0.01).aspp] == [1] * 4
    x = torch.randn(1, 3, 40, 33)
    assert dl.eval()(x).shape == (1, 20, 40, 33)
    # the other baselines have no atrous head: unchanged, same parameters
    for name in ("fcn8s", "segnet"):
        torch.manual_seed(0)
        a = build_model(name, width=0.0625)
        torch.manual_seed(0)
        b = build_model(name, width=0.0625, atrous_scale=0.4)
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(ValueError, match="atrous_scale must be > 0"):
        build_model("deeplabv2", atrous_scale=0)


def test_attention_starts_with_equal_weights_on_every_scale():
    """The attention model's last layer starts at zero: a new network weighs the scales 1 / 0.75 / 0.5
    equally at every pixel, whatever the image."""
    torch.manual_seed(0)
    model = build_model("attention", num_classes=5, width=TINY).eval()
    weights = model.forward_parts(torch.randn(2, 3, 40, 40))["weights"]
    assert weights.shape[1] == 3 and torch.equal(weights, torch.full_like(weights, 1 / 3))


@pytest.mark.parametrize("shape,size", [((2, 5, 16, 16), (128, 128)), ((1, 3, 13, 17), (101, 131)),
                                        ((2, 4, 128, 96), (96, 72)), ((1, 2, 1, 7), (5, 1)), ((1, 1, 9, 9), (9, 4))])
def test_resize_is_bilinear_interpolation(shape, size):
    """models.vgg.resize (two matrix products) computes F.interpolate's bilinear resampling
    (align_corners=False, no antialiasing), up- and downsampling, and its gradient."""
    from lipstudy.models.vgg import resize

    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    ours = resize(x, size)
    ref = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    assert ours.shape == ref.shape and torch.allclose(ours, ref, rtol=0, atol=1e-12)
    g = torch.randn_like(ref)
    (g_ours,), (g_ref,) = torch.autograd.grad(ours, x, g), torch.autograd.grad(ref, x, g)
    assert torch.allclose(g_ours, g_ref, rtol=0, atol=1e-12)
