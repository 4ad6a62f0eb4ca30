"""The parsing loss and the structure-sensitive loss (paper Eq. 2), paper vs released semantics."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lipstudy.joints import joint_structure_loss
from lipstudy.losses import (MODES, PPP_JOINT_VIEW, aux_loss, parsing_loss, ppp_joint_view,
                             structure_sensitive_loss, structure_sensitive_terms, training_loss)

B, C, H, W = 3, 20, 32, 32


def targets() -> torch.Tensor:
    """Three blocky people, one with ignore padding on its right edge."""
    t = torch.zeros(B, H, W, dtype=torch.uint8)
    for i, shift in enumerate((0, 3, 6)):
        t[i, 2:8, 10 + shift:18 + shift] = 13   # face
        t[i, 8:18, 8 + shift:20 + shift] = 5    # upper-clothes
        t[i, 8:18, 4 + shift:8 + shift] = 14    # left arm
        t[i, 18:28, 9 + shift:19 + shift] = 9   # pants
        t[i, 28:31, 9 + shift:13 + shift] = 18  # left shoe
    t[2, :, 26:] = 255
    return t


def logits_for(seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, C, H, W, generator=g, dtype=torch.float64).requires_grad_()


def grad_of(loss_fn, logits):
    x = logits.detach().clone().requires_grad_()
    loss = loss_fn(x)
    loss.backward()
    return loss.detach(), x.grad


def test_off_equals_cross_entropy_with_ignore():
    x, t = logits_for(), targets()
    off, g_off = grad_of(lambda z: structure_sensitive_loss(z, t, mode="off"), x)
    ref, g_ref = grad_of(lambda z: F.cross_entropy(z, t.long(), ignore_index=255), x)
    assert torch.allclose(off, ref, rtol=1e-12, atol=0)
    assert torch.allclose(g_off, g_ref, rtol=1e-10, atol=1e-15)
    assert torch.allclose(parsing_loss(x, t), ref, rtol=1e-12)


def test_parsing_loss_none_is_per_image_mean_and_empty_image_gives_zero():
    x, t = logits_for(), targets()
    per = parsing_loss(x, t, reduction="none")
    assert per.shape == (B,)
    for i in range(B):
        ref = F.cross_entropy(x[i:i + 1], t[i:i + 1].long(), ignore_index=255)
        assert per[i].item() == pytest.approx(ref.item(), rel=1e-12)
    t_empty = t.clone()
    t_empty[1] = 255
    per, g = grad_of(lambda z: parsing_loss(z, t_empty, reduction="none").sum(), x)
    assert torch.isfinite(g).all() and torch.equal(g[1], torch.zeros_like(g[1]))
    assert parsing_loss(x, t_empty, reduction="none")[1].item() == 0.0
    all_ignored = torch.full_like(t, 255)
    loss, g = grad_of(lambda z: parsing_loss(z, all_ignored), x)
    assert loss.item() == 0.0 and torch.isfinite(g).all()


def test_terms_are_joint_loss_of_argmax_and_per_image_ce():
    x, t = logits_for(), targets()
    l_joint, l_parsing = structure_sensitive_terms(x, t, stride=4)
    pred = x.detach().argmax(1)
    pred[t == 255] = 255  # padding moves neither set of joints
    assert torch.allclose(l_joint, joint_structure_loss(pred, t, stride=4), rtol=1e-6)
    assert (l_joint > 0).all() and not l_joint.requires_grad
    assert torch.allclose(l_parsing, parsing_loss(x, t, reduction="none"))
    assert l_parsing.requires_grad
    released, _ = structure_sensitive_terms(x, t, stride=4, convention="released")
    assert torch.allclose(released / l_joint, torch.full_like(l_joint, 0.025 * 18), rtol=1e-5)


def test_predictions_on_padding_do_not_move_joints():
    t = targets()
    x = (F.one_hot(t.long().clamp(max=19), C).permute(0, 3, 1, 2) * 10.0).double()
    # The network "sees" a right shoe in image 2's padding: it must not count.
    x[2, 19, :, 26:] = 100.0
    l_joint, _ = structure_sensitive_terms(x, t, stride=2)
    assert torch.equal(l_joint, torch.zeros(B))


def test_paper_gradient_is_each_images_ce_gradient_times_its_joint_loss():
    x, t = logits_for(1), targets()
    l_joint, _ = structure_sensitive_terms(x, t)
    loss, g = grad_of(lambda z: structure_sensitive_loss(z, t, mode="paper"), x)
    assert loss.item() == pytest.approx((l_joint.double() * parsing_loss(x, t, reduction="none")).mean().item(),
                                        rel=1e-12)
    for i in range(B):
        _, gi = grad_of(lambda z: F.cross_entropy(z, t[i:i + 1].long(), ignore_index=255), x[i:i + 1])
        assert torch.allclose(g[i], l_joint[i].double() / B * gi[0], rtol=1e-9, atol=1e-15)


def test_released_forward_is_papers_value_backward_is_plain_ce():
    x, t = logits_for(2), targets()
    paper, g_paper = grad_of(lambda z: structure_sensitive_loss(z, t, mode="paper"), x)
    released, g_rel = grad_of(lambda z: structure_sensitive_loss(z, t, mode="released"), x)
    off, g_off = grad_of(lambda z: structure_sensitive_loss(z, t, mode="off"), x)
    _, g_ce = grad_of(lambda z: F.cross_entropy(z, t.long(), ignore_index=255), x)
    assert released.item() == pytest.approx(paper.item(), rel=1e-12)
    assert released.item() != pytest.approx(off.item(), rel=1e-3)
    assert torch.equal(g_rel, g_off)
    assert torch.allclose(g_rel, g_ce, rtol=1e-10, atol=1e-15)
    assert not torch.allclose(g_rel, g_paper)


def test_perfect_joints_zero_the_paper_loss_but_not_plus_one():
    t = targets()
    # Right joints but imperfect pixels: a tie-free logit map whose argmax is the target.
    x = (F.one_hot(t.long().clamp(max=19), C).permute(0, 3, 1, 2) * 2.0).double()
    x = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x[t.unsqueeze(1).expand_as(x) == 255] = 0.0
    assert (x.argmax(1)[t != 255] == t[t != 255].long()).all()
    paper, g_paper = grad_of(lambda z: structure_sensitive_loss(z, t, mode="paper"), x)
    assert paper.item() == 0.0 and torch.equal(g_paper, torch.zeros_like(g_paper))
    plus, g_plus = grad_of(lambda z: structure_sensitive_loss(z, t, mode="plus_one"), x)
    _, g_ref = grad_of(lambda z: parsing_loss(z, t, reduction="none").mean(), x)
    assert plus.item() == pytest.approx(parsing_loss(x, t, reduction="none").mean().item(), rel=1e-12)
    assert plus.item() > 0 and torch.allclose(g_plus, g_ref, rtol=1e-12, atol=0)


def test_plus_one_weights_are_one_plus_joint_loss():
    x, t = logits_for(4), targets()
    l_joint, l_parsing = structure_sensitive_terms(x, t)
    plus = structure_sensitive_loss(x, t, mode="plus_one")
    assert plus.item() == pytest.approx(((1 + l_joint.double()) * l_parsing).mean().item(), rel=1e-12)


@pytest.mark.parametrize("mode", [m for m in MODES if m != "shuffled"])  # shuffled mixes images by design
def test_batched_equals_mean_of_single_images(mode):
    x, t = logits_for(5), targets()
    t = t.clone()
    t[2, :, 26:] = 0  # equal valid-pixel counts, so "off" (pixel mean) equals the image mean too
    batch, g = grad_of(lambda z: structure_sensitive_loss(z, t, mode=mode, stride=4), x)
    singles = []
    for i in range(B):
        li, gi = grad_of(lambda z: structure_sensitive_loss(z, t[i:i + 1], mode=mode, stride=4), x[i:i + 1])
        singles.append(li)
        assert torch.allclose(g[i], gi[0] / B, rtol=1e-9, atol=1e-15)
    assert batch.item() == pytest.approx(torch.stack(singles).mean().item(), rel=1e-12)


def test_return_terms_and_float32_logits():
    x, t = logits_for(6).float(), targets()
    loss, l_joint, l_parsing = structure_sensitive_loss(x, t, mode="off", return_terms=True)
    assert loss.dtype == torch.float32 and loss.shape == ()
    ref_joint, ref_parsing = structure_sensitive_terms(x, t)
    assert torch.equal(l_joint, ref_joint)
    assert torch.allclose(l_parsing, ref_parsing.detach()) and not l_parsing.requires_grad


def test_bad_inputs():
    x, t = logits_for(), targets()
    with pytest.raises(ValueError, match="mode"):
        structure_sensitive_loss(x, t, mode="ssl")
    with pytest.raises(ValueError, match="target must be"):
        structure_sensitive_loss(x, t[:, :16])
    with pytest.raises(ValueError, match="logits must be"):
        parsing_loss(x[0], t[0])
    with pytest.raises(TypeError, match="integer"):
        parsing_loss(x, t.float())
    with pytest.raises(ValueError, match="reduction"):
        parsing_loss(x, t, reduction="sum")
    with pytest.raises(ValueError, match="convention"):
        structure_sensitive_loss(x, t, convention="caffe")


def test_trains_a_tiny_net_in_every_mode():
    """The loss drives an optimiser: a 1x1 conv learns a colour -> label mapping in every mode.

    Each label has its own colour, so a linear classifier can get every pixel right (the nearest
    colour wins); every mode must reach exactly that. Predicting background everywhere, what a
    loss with a wrong sign or a zero weight ends at, scores 2/3 of the pixels here."""
    t = targets()
    valid = (t != 255)
    assert (t[valid] == 0).float().mean().item() == pytest.approx(2 / 3, abs=0.01)
    colors = torch.from_numpy(np.random.default_rng(0).normal(size=(256, 3))).float()
    image = colors[t.long()].permute(0, 3, 1, 2)
    nets = {}
    for mode in MODES:
        torch.manual_seed(0)
        net = torch.nn.Conv2d(3, C, 1)
        opt = torch.optim.SGD(net.parameters(), lr=2.0, momentum=0.9)
        for _ in range(150):
            loss = structure_sensitive_loss(net(image), t, mode=mode, stride=2)
            opt.zero_grad()
            loss.backward()
            opt.step()
        acc = (net(image).argmax(1) == t.long())[valid].float().mean().item()
        assert acc == 1.0, (mode, acc)
        nets[mode] = net
    # "released" back-propagates plain cross-entropy: the same trajectory as "off", bit for bit.
    assert torch.equal(nets["released"].weight, nets["off"].weight)
    assert torch.equal(nets["released"].bias, nets["off"].bias)
    assert not torch.equal(nets["paper"].weight, nets["off"].weight)


# the training loss of a network's outputs: auxiliary score maps, PASCAL-Person-Part's joint view


def test_aux_loss_known_answer():

    # Two images, two classes: image 0 has 3 valid pixels, image 1 one valid pixel (255 = ignore).
    target = torch.tensor([[[0, 0], [1, 255]], [[1, 255], [255, 255]]])
    uniform = torch.zeros(2, 2, 2, 2)          # every pixel: p = 1/2, cross-entropy ln 2
    sharper = torch.zeros(2, 2, 2, 2)
    sharper[1, 1, 0, 0] = np.log(3.0)          # image 1's pixel (class 1): p = 3/4, CE = ln(4/3)
    assert aux_loss([], target).item() == 0.0
    assert aux_loss([uniform], target).item() == pytest.approx(np.log(2), rel=1e-6)
    # Each image's mean over its own valid pixels, then the mean over images: (ln 2 + ln 4/3) / 2,
    # not the pooled (3 ln 2 + ln 4/3) / 4 over the batch's pixels.
    per_image = (np.log(2) + np.log(4 / 3)) / 2
    assert aux_loss([sharper], target).item() == pytest.approx(per_image, rel=1e-6)
    assert aux_loss([uniform, sharper], target).item() == pytest.approx(np.log(2) + per_image, rel=1e-6)
    # An image with no valid pixel adds 0, not NaN.
    empty = target.clone()
    empty[1] = 255
    assert aux_loss([sharper], empty).item() == pytest.approx(np.log(2) / 2, rel=1e-6)
    # The training loss is the main output's cross-entropy plus the auxiliary terms.
    main_out = torch.zeros(2, 2, 2, 2)
    total = training_loss({"out": main_out, "aux": [uniform, sharper]}, target, "off")
    assert total.item() == pytest.approx(2 * np.log(2) + per_image, rel=1e-6)


def test_ppp_joint_view_keeps_the_seven_class_loss():
    torch.manual_seed(0)
    logits = torch.randn(2, 7, 12, 12, requires_grad=True)
    target = torch.randint(0, 7, (2, 12, 12))
    target[0, :3] = 255
    big, big_t = ppp_joint_view(logits, target)
    assert big.shape == (2, 20, 12, 12) and torch.equal(big[:, list(PPP_JOINT_VIEW)], logits)
    assert big_t[0, :3].eq(255).all() and torch.equal(big_t[0, 5], torch.tensor(PPP_JOINT_VIEW)[target[0, 5]])
    a = F.cross_entropy(logits, target, ignore_index=255)
    b = F.cross_entropy(big, big_t, ignore_index=255)
    ga, = torch.autograd.grad(a, logits, retain_graph=True)
    gb, = torch.autograd.grad(b, logits)
    assert torch.allclose(a, b) and torch.allclose(ga, gb, atol=1e-7)
    # Plain CE on PPP is untouched by the view; the SSL modes weight it per image.
    assert torch.allclose(training_loss(logits, target, "off", "ppp"), a)
    assert torch.isfinite(training_loss(logits, target, "paper", "ppp"))


def test_unit_is_the_mean_of_each_images_mean_cross_entropy():
    """The control's loss, by hand: image i's mean cross-entropy over its own valid pixels, then the
    mean over images. With the third image padded (ignore pixels), it is not "off"'s pixel mean."""
    x, t = logits_for(7), targets()
    ce = F.cross_entropy(x, t.long(), ignore_index=255, reduction="none")
    valid = (t != 255)
    by_hand = torch.stack([ce[i][valid[i]].mean() for i in range(B)]).mean()
    unit = structure_sensitive_loss(x, t, mode="unit")
    off = structure_sensitive_loss(x, t, mode="off")
    assert unit.item() == pytest.approx(by_hand.item(), rel=1e-12)
    assert abs(unit.item() - off.item()) > 1e-6  # the padding makes the two averages differ


def test_paper_with_every_weight_one_is_the_unit_control_bit_for_bit(monkeypatch):
    """SSL minus its control is the structure weight's effect alone: with L_joint forced to 1, Eq. 2
    gives the control's value and gradient exactly."""
    import lipstudy.losses as L

    x, t = logits_for(8), targets()
    unit, g_unit = grad_of(lambda z: structure_sensitive_loss(z, t, mode="unit"), x)
    monkeypatch.setattr(L, "_joint_weights", lambda logits, *a, **k: torch.ones(logits.shape[0]))
    paper, g_paper = grad_of(lambda z: structure_sensitive_loss(z, t, mode="paper"), x)
    assert torch.equal(unit, paper) and torch.equal(g_unit, g_paper)


def test_shuffled_weighs_each_image_by_the_next_images_joint_loss():
    x, t = logits_for(9), targets()
    l_joint, l_parsing = structure_sensitive_terms(x, t)
    assert len(set(l_joint.tolist())) == B  # three different weights, so the roll matters
    by_hand = (l_joint[[2, 0, 1]].double() * l_parsing).mean()
    shuffled = structure_sensitive_loss(x, t, mode="shuffled")
    paper = structure_sensitive_loss(x, t, mode="paper")
    assert shuffled.item() == pytest.approx(by_hand.item(), rel=1e-12)
    assert abs(shuffled.item() - paper.item()) > 1e-6
    # The same weights: their sum over the batch is the paper's.
    assert l_joint.roll(1).sum().item() == pytest.approx(l_joint.sum().item(), rel=1e-12)
