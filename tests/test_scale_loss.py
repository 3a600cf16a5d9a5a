"""The pure SCALe loss and schedules: hand-computed values, invariances, gradients, accumulation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from scalevlm.core.scale_loss import (
    ANSWER,
    IGNORE,
    TAG,
    THINK,
    ScaleStats,
    progress,
    scale_loss,
    schedule_weights,
    segment_counts,
    shifted_token_ce,
)

T, A, X = THINK, ANSWER, IGNORE

# Two samples: sample 0 think CE [1, 2], answer CE [3, 4]; sample 1 think CE [2], answer CE [2, 6].
CE = torch.tensor([[1.0, 2.0, 3.0, 4.0, 9.0], [2.0, 2.0, 6.0, 9.0, 9.0]])
SEG = torch.tensor([[T, T, A, A, X], [T, A, A, X, X]])


def test_per_sample_hand_computed() -> None:
    loss, stats = scale_loss(CE, SEG, 0.25, 0.75, "per_sample")
    # sample 0: 0.25·1.5 + 0.75·3.5 = 3.0; sample 1: 0.25·2 + 0.75·4 = 3.5; mean = 3.25
    assert loss.item() == pytest.approx(3.25)
    assert stats.loss_think == pytest.approx((1.5 + 2.0) / 2)
    assert stats.loss_answer == pytest.approx((3.5 + 4.0) / 2)
    assert (stats.think_tokens, stats.answer_tokens, stats.samples) == (3, 4, 2)


def test_stats_add_up_over_micro_batches_and_processes() -> None:
    """The logged statistics are sums and counts: two halves added (in-process `+`, or summed as lists as a gather
    over processes does) give exactly the statistics of the whole batch."""
    _, whole = scale_loss(CE, SEG, 0.25, 0.75)
    _, first = scale_loss(CE[:1], SEG[:1], 0.25, 0.75)
    _, second = scale_loss(CE[1:], SEG[1:], 0.25, 0.75)
    assert first + second == whole
    assert ScaleStats.from_list([a + b for a, b in zip(first.as_list(), second.as_list(), strict=True)]) == whole
    assert (whole.think_loss_sum, whole.think_samples, whole.answer_loss_sum, whole.answer_samples) == (3.5, 2, 7.5, 2)


def test_per_batch_hand_computed() -> None:
    loss, _ = scale_loss(CE, SEG, 0.25, 0.75, "per_batch")
    # think tokens 1, 2, 2 → 5/3; answer tokens 3, 4, 2, 6 → 15/4
    assert loss.item() == pytest.approx(0.25 * 5 / 3 + 0.75 * 15 / 4)


def test_vanilla_is_token_mean() -> None:
    loss, _ = scale_loss(CE, SEG, 0.0, 1.0, "vanilla")  # weights are ignored by vanilla
    assert loss.item() == pytest.approx(20 / 7)


def test_uniform_weights_reduce_to_per_sample_mean_ce() -> None:
    """w = ½/½ on samples whose two segments have equal length: exactly the per-sample mean CE."""
    ce = torch.rand(3, 8) * 5
    seg = torch.tensor([[T, T, A, A, X, X, X, X], [T, T, T, A, A, A, X, X], [T, A, X, X, X, X, X, X]])
    loss, _ = scale_loss(ce, seg, 0.5, 0.5, "per_sample")
    mask = seg != X
    expected = ((ce * mask).sum(1) / mask.sum(1)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_zero_weight_gives_zero_gradient_to_that_segment() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 7, 11, requires_grad=True)
    labels = torch.randint(0, 11, (2, 7))
    labels[:, 0] = -100
    seg = torch.tensor([[X, T, T, T, A, A, A], [X, T, T, A, A, X, X]])
    labels[1, 5:] = -100
    ce = shifted_token_ce(logits, labels)  # [B, T-1] aligned with seg[:, 1:]
    loss, _ = scale_loss(ce, seg[:, 1:], 0.0, 1.0)
    loss.backward()
    grad_norm = logits.grad.norm(dim=-1)[:, :-1]  # logits at t predict label t+1
    shifted = seg[:, 1:]
    assert torch.all(grad_norm[shifted == T] == 0)
    assert torch.all(grad_norm[shifted == A] > 0)


def test_length_independence() -> None:
    """Doubling a think trace (same per-token CE) changes neither L_think nor the loss; vanilla does change."""
    short_ce = torch.tensor([[2.0, 4.0, 1.0, 0.0, 0.0, 0.0]])
    short_seg = torch.tensor([[T, T, A, X, X, X]])
    long_ce = torch.tensor([[2.0, 4.0, 2.0, 4.0, 1.0, 0.0]])
    long_seg = torch.tensor([[T, T, T, T, A, X]])
    short, s_stats = scale_loss(short_ce, short_seg, 0.5, 0.5)
    long, l_stats = scale_loss(long_ce, long_seg, 0.5, 0.5)
    assert short.item() == pytest.approx(long.item())
    assert s_stats.loss_think == pytest.approx(l_stats.loss_think)
    v_short, _ = scale_loss(short_ce, short_seg, 0.5, 0.5, "vanilla")
    v_long, _ = scale_loss(long_ce, long_seg, 0.5, 0.5, "vanilla")
    assert v_short.item() != pytest.approx(v_long.item())


def test_missing_segment_rule() -> None:
    """No answer tokens → only w_think·L_think, not renormalised, still counted in N; no tokens → not a sample."""
    ce = torch.tensor([[2.0, 4.0, 0.0], [1.0, 5.0, 0.0], [7.0, 7.0, 7.0]])
    seg = torch.tensor([[T, T, X], [T, A, X], [X, X, X]])
    loss, stats = scale_loss(ce, seg, 0.25, 0.75)
    # sample 0: 0.25·3 = 0.75 (answer term missing, NOT 3); sample 1: 0.25·1 + 0.75·5 = 4.0; N = 2
    assert loss.item() == pytest.approx((0.75 + 4.0) / 2)
    assert stats.samples == 2
    assert stats.loss_answer == pytest.approx(5.0)  # mean over samples that have answer tokens
    only_think, st = scale_loss(ce[:1], seg[:1], 0.25, 0.75)
    assert only_think.item() == pytest.approx(0.75) and math.isnan(st.loss_answer)
    empty, _ = scale_loss(ce[2:], seg[2:], 0.25, 0.75)
    assert empty.item() == 0.0


def test_structural_tokens_get_the_token_mean_weight() -> None:
    """TAG tokens leave both segment means and add Σ CE / (all supervised tokens) under every normalisation."""
    ce = torch.tensor([[1.0, 2.0, 5.0, 3.0, 7.0], [2.0, 4.0, 6.0, 9.0, 9.0]])
    seg = torch.tensor([[T, T, TAG, A, TAG], [T, TAG, A, X, X]])
    loss, stats = scale_loss(ce, seg, 0.25, 0.75, "per_sample")
    # sample 0: 0.25·1.5 + 0.75·3 = 2.625; sample 1: 0.25·2 + 0.75·6 = 5.0; tags (5 + 7 + 4) / 8 tokens = 2.0
    assert loss.item() == pytest.approx((2.625 + 5.0) / 2 + 2.0)
    assert stats.loss_tags == pytest.approx(16 / 3) and stats.tag_tokens == 3
    assert stats.loss_answer == pytest.approx((3.0 + 6.0) / 2)
    vanilla, _ = scale_loss(ce, seg, 0.25, 0.75, "vanilla")
    assert vanilla.item() == pytest.approx((1 + 2 + 5 + 3 + 7 + 2 + 4 + 6) / 8)
    with pytest.raises(ValueError, match="together"):
        scale_loss(ce, seg, 0.25, 0.75, "per_sample", num_samples=2, num_think_tokens=3, num_answer_tokens=2)


@pytest.mark.parametrize("tags", [False, True])
@pytest.mark.parametrize("normalisation", ["per_sample", "per_batch", "vanilla"])
def test_accumulation_2x4_equals_batch_of_8(normalisation: str, tags: bool) -> None:
    torch.manual_seed(1)
    logits = torch.randn(8, 12, 17, dtype=torch.float64)
    labels = torch.randint(0, 17, (8, 12))
    seg = torch.zeros(8, 12, dtype=torch.long)
    for i in range(8):  # varying prompt, think and answer lengths
        start, end = 1 + i % 3, 6 + (i * 5) % 6
        seg[i, start:end] = T
        seg[i, end : min(12, end + 1 + i % 2)] = A
        if tags:  # the closing token of each segment is structural
            seg[i, end - 1] = TAG
            seg[i, min(11, end + i % 2)] = TAG
    labels[seg == X] = -100

    def loss_of(rows: slice, counts: dict | None, x: torch.Tensor) -> torch.Tensor:
        ce = shifted_token_ce(x[rows], labels[rows])
        return scale_loss(ce, seg[rows, 1:], 0.3, 0.7, normalisation, **(counts or {}))[0]

    full_logits = logits.clone().requires_grad_(True)
    full = loss_of(slice(0, 8), None, full_logits)
    full.backward()

    total = segment_counts(seg[:4, 1:]) + segment_counts(seg[4:, 1:])
    counts = {"num_samples": total.samples, "num_think_tokens": total.think_tokens,
              "num_answer_tokens": total.answer_tokens, "num_tag_tokens": total.tag_tokens}
    acc_logits = logits.clone().requires_grad_(True)
    acc = loss_of(slice(0, 4), counts, acc_logits) + loss_of(slice(4, 8), counts, acc_logits)
    acc.backward()
    assert acc.item() == pytest.approx(full.item(), rel=1e-12)
    assert torch.allclose(acc_logits.grad, full_logits.grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("cosine", (0.9, 0.5, 0.1)),
        ("linear", (0.9, 0.5, 0.1)),
        ("constant", (0.9, 0.9, 0.9)),
        ("step", (0.9, 0.1, 0.1)),
    ],
)
def test_schedule_values(schedule: str, expected: tuple[float, float, float]) -> None:
    for p, want in zip((0.0, 0.5, 1.0), expected, strict=True):
        w_think, w_ans = schedule_weights(schedule, p, 0.9, 0.1)
        assert w_think == pytest.approx(want)
        assert w_ans == pytest.approx(1 - want)


def test_cosine_shape_and_clamping() -> None:
    assert schedule_weights("cosine", 0.25, 1.0, 0.0)[0] == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert schedule_weights("cosine", 2.0, 1.0, 0.0) == schedule_weights("cosine", 1.0, 1.0, 0.0)
    assert progress(0, 600) == 0.0 and progress(300, 600) == 0.5 and progress(900, 600) == 1.0


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="unknown schedule"):
        schedule_weights("exp", 0.1, 1.0, 0.0)
    with pytest.raises(ValueError, match="w_start"):
        schedule_weights("cosine", 0.1, 1.5, 0.0)
    with pytest.raises(ValueError, match="same"):
        scale_loss(CE, SEG[:, :3], 0.5, 0.5)
    with pytest.raises(ValueError, match="normalisation"):
        scale_loss(CE, SEG, 0.5, 0.5, "per_token")


def test_shifted_token_ce_matches_torch() -> None:
    torch.manual_seed(2)
    logits, labels = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    labels[0, :2] = -100
    ce = shifted_token_ce(logits, labels)
    ref = F.cross_entropy(logits[:, :-1].reshape(-1, 7), labels[:, 1:].reshape(-1), ignore_index=-100)
    assert ce.shape == (2, 4)
    assert ce.sum().item() / (labels[:, 1:] != -100).sum().item() == pytest.approx(ref.item(), rel=1e-6)
