"""Exact-value tests of the torch-only parts: loss, tau, EMA, kNN, RankMe, heads, optim, probe."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from byol_tune.parts import momentum
from byol_tune.parts.heads import MLPHead
from byol_tune.parts.knn import knn_accuracy, knn_predict, top_k
from byol_tune.parts.loss import byol_loss, normalized_mse
from byol_tune.parts.optim import LARS, param_groups, warmup_cosine
from byol_tune.parts.probe import linear_probe
from byol_tune.parts.rankme import rankme


def test_loss_is_zero_for_identical_and_four_for_opposite() -> None:
    v = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]])
    assert normalized_mse(v, 3 * v).item() == pytest.approx(0.0, abs=1e-6)
    assert normalized_mse(v, -v).item() == pytest.approx(4.0, abs=1e-6)
    assert byol_loss(v, v, v, v).item() == pytest.approx(0.0, abs=1e-6)
    assert byol_loss(v, v, -v, -v).item() == pytest.approx(4.0, abs=1e-6)


def test_loss_orthogonal_is_two_and_symmetric_average() -> None:
    p = torch.tensor([[1.0, 0.0]])
    z = torch.tensor([[0.0, 1.0]])
    assert normalized_mse(p, z).item() == pytest.approx(2.0)
    # p1 vs z2 identical (0), p2 vs z1 opposite (4): the average of both orders is 2
    assert byol_loss(p, p, -p, p).item() == pytest.approx(2.0)


def test_loss_gradient_never_reaches_target() -> None:
    p = torch.randn(4, 8, requires_grad=True)
    z = torch.randn(4, 8, requires_grad=True)
    normalized_mse(p, z).backward()
    assert p.grad is not None and z.grad is None


def test_tau_endpoints_midpoint_and_constant() -> None:
    assert momentum.tau_at(0, 0.99, 100) == pytest.approx(0.99)
    assert momentum.tau_at(100, 0.99, 100) == 1.0
    assert momentum.tau_at(250, 0.99, 100) == 1.0
    assert momentum.tau_at(50, 0.99, 100) == pytest.approx(0.995)
    expected = 1 - 0.01 * (math.cos(math.pi * 25 / 100) + 1) / 2
    assert momentum.tau_at(25, 0.99, 100) == pytest.approx(expected)
    assert momentum.tau_at(70, 0.99, 100, cosine=False) == 0.99
    with pytest.raises(ValueError, match="tau_base"):
        momentum.tau_at(0, 1.5, 10)


def test_cosine_schedule_is_lightly_s_value_for_value() -> None:
    """lightly 1.6's cosine_schedule reaches end_value at max_steps - 1 (its values, computed there)."""
    assert momentum.cosine_schedule(0, 10, 0.996, 1.0) == 0.996
    assert momentum.cosine_schedule(4, 10, 0.996, 1.0) == 1.0 - 0.004 * (math.cos(math.pi * 4 / 9) + 1) / 2
    assert [momentum.cosine_schedule(s, 10, 0.996, 1.0) for s in (9, 10, 50)] == [1.0, 1.0, 1.0]
    assert momentum.cosine_schedule(0, 1, 0.9, 1.0) == momentum.cosine_schedule(0, 0, 0.9, 1.0) == 1.0
    # lightly's period: a full cycle, start -> end -> start
    cycle = [momentum.cosine_schedule(s, 10, 0.5, 1.0, period=4) for s in range(5)]
    assert cycle == pytest.approx([0.5, 0.75, 1.0, 0.75, 0.5])
    with pytest.raises(ValueError, match="max_steps"):
        momentum.cosine_schedule(0, -1, 0.9, 1.0)


def _pair() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4))
    target = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4))
    online[1].running_mean.fill_(3.0)
    return online, target


def test_ema_m0_copies_and_m1_keeps() -> None:
    online, target = _pair()
    before = [p.clone() for p in target.parameters()]
    momentum.update_momentum(online, target, m=1.0)
    for p, b in zip(target.parameters(), before, strict=True):
        assert torch.equal(p, b)
    momentum.update_momentum(online, target, m=0.0)
    for p, q in zip(target.parameters(), online.parameters(), strict=True):
        assert torch.equal(p, q)
    assert torch.equal(target[1].running_mean, torch.full((4,), 3.0))


def test_ema_matches_formula() -> None:
    online, target = _pair()
    expected = [0.9 * t + 0.1 * o for t, o in zip(target.parameters(), online.parameters(), strict=True)]
    momentum.update_momentum(online, target, m=0.9)
    for p, e in zip(target.parameters(), expected, strict=True):
        torch.testing.assert_close(p, e, atol=1e-6, rtol=0)


def test_deactivate_requires_grad() -> None:
    online, _ = _pair()
    momentum.deactivate_requires_grad(online)
    assert not any(p.requires_grad for p in online.parameters())


def test_knn_ranking_on_four_item_bank() -> None:
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 2])
    query = torch.tensor([[1.0, 0.05], [0.0, 1.0], [-1.0, 0.1]])
    ranking = knn_predict(query, bank, labels, num_classes=3, k=2, temperature=0.1)
    assert ranking[:, 0].tolist() == [0, 1, 2]
    # second query: neighbours are item 2 (class 1, sim 1) and item 1 (class 0): class 2 gets nothing
    assert ranking[1].tolist() == [1, 0, 2]
    acc = knn_accuracy(query, torch.tensor([0, 1, 0]), bank, labels, 3, k=2)
    assert acc.top1 == pytest.approx(200 / 3)
    assert acc.top5 == pytest.approx(100.0)


def test_knn_temperature_floor_keeps_votes_finite() -> None:
    """At the smallest temperature computed, 6,000 votes of similarity 1 still sum to finite, comparable
    totals (the class with one vote more wins); below it exp alone overflows, every vote would be inf and
    the ranking would be the classes' order."""
    from byol_tune.metrics import KNN_MIN_TEMPERATURE

    bank, labels = torch.ones(6000, 2), torch.tensor([1] * 2001 + [0] * 2000 + [2] * 1999)
    ranking = knn_predict(torch.ones(1, 2), bank, labels, 3, k=6000, temperature=KNN_MIN_TEMPERATURE)
    assert ranking[0].tolist() == [1, 0, 2]
    with pytest.raises(ValueError, match=r"^knn temperature must be >= 0.0125 \(exp"):
        knn_predict(torch.ones(1, 2), bank, labels, 3, k=5, temperature=0.011)


def test_knn_chunking_gives_same_ranking() -> None:
    torch.manual_seed(1)
    bank, query = torch.randn(50, 8), torch.randn(13, 8)
    labels = torch.randint(0, 4, (50,))
    full = knn_predict(query, bank, labels, 4, k=7, chunk_size=1000)
    chunked = knn_predict(query, bank, labels, 4, k=7, chunk_size=3)
    assert torch.equal(full, chunked)


def test_knn_ranking_equals_a_full_sort_reference() -> None:
    """The unordered top-k votes like the k best of a full sort, summed in float64."""
    torch.manual_seed(2)
    bank, query, labels = torch.randn(400, 16), torch.randn(37, 16), torch.randint(0, 3, (400,))
    sim = F.normalize(query.double(), dim=1) @ F.normalize(bank.double(), dim=1).T
    order = sim.argsort(dim=1, descending=True)[:, :60]
    votes = torch.zeros(37, 3, dtype=torch.float64)
    votes.scatter_add_(1, labels[order], (sim.gather(1, order) / 0.1).exp())
    assert (votes > 0).all()  # every class voted for: no ties among empty classes
    ranking = knn_predict(query, bank, labels, 3, k=60, chunk_size=16)
    assert torch.equal(ranking, votes.argsort(1, descending=True))


@pytest.mark.parametrize(("n", "k"), [(5000, 200), (5003, 200), (401, 60), (10, 3), (7, 7), (300, 1)])
def test_top_k_selects_the_same_items_as_torch_topk(n: int, k: int) -> None:
    """Blocked selection (5003: three columns left over; 7 of 7: plain topk) keeps the same columns."""
    sim = torch.randn(9, n, generator=torch.Generator().manual_seed(n))
    values, columns = top_k(sim, k)
    assert torch.equal(columns.sort(dim=1).values, sim.topk(k, dim=1).indices.sort(dim=1).values)
    assert torch.equal(values, sim.gather(1, columns))


def test_top_k_with_ties_keeps_k_distinct_items_none_beaten() -> None:
    """Values 0..9 repeated: any k items are valid if no left-out item is larger than a kept one."""
    sim = (torch.arange(600) % 10).float().repeat(4, 1)  # (4, 600)
    sim = sim[:, torch.randperm(600, generator=torch.Generator().manual_seed(0))]
    values, columns = top_k(sim, 90)
    for row in range(4):
        assert columns[row].unique().numel() == 90
        left_out = torch.ones(600, dtype=torch.bool)
        left_out[columns[row]] = False
        assert values[row].min() >= sim[row, left_out].max()
    assert values.sum(dim=1).tolist() == [90 * 9 - 30] * 4  # sixty 9s and thirty 8s


def test_rankme_identity_and_rank_one() -> None:
    assert rankme(torch.eye(8)) == pytest.approx(8.0, rel=1e-4)
    rank1 = torch.outer(torch.arange(1.0, 11.0), torch.tensor([1.0, -2.0, 0.5]))
    assert rankme(rank1) == pytest.approx(1.0, rel=1e-4)
    with pytest.raises(ValueError, match="rankme"):
        rankme(torch.zeros(0, 3))


def test_mlp_head_shape_and_layers() -> None:
    head = MLPHead(16, 32, 8)
    assert [type(m) for m in head] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert head(torch.randn(4, 16)).shape == (4, 8)
    with pytest.raises(ValueError, match="hidden_dim"):
        MLPHead(16, 0, 8)


def test_warmup_cosine_endpoints() -> None:
    assert warmup_cosine(0, 4, 20) == pytest.approx(0.2)
    assert warmup_cosine(4, 4, 20) == pytest.approx(1.0)
    assert warmup_cosine(12, 4, 20) == pytest.approx(0.5)
    assert warmup_cosine(20, 4, 20) == pytest.approx(0.0)
    assert warmup_cosine(12, 4, 20, cosine=False) == 1.0


def test_param_groups_exclude_bias_and_norm() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    decay, no_decay = param_groups(model, 0.1, exclude_bias_norm=True)
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 3])]
    assert len(no_decay["params"]) == 3 and no_decay["weight_decay"] == 0.0
    assert no_decay["lars_exclude"] is True


def test_lars_trust_ratio_step() -> None:
    w = nn.Parameter(torch.tensor([3.0, 4.0]))  # norm 5
    w.grad = torch.tensor([0.0, 1.0])  # norm 1
    LARS([w], lr=1.0, momentum=0.0, eta=0.1).step()
    # step = lr * eta * ||w|| / ||g|| * g = 0.5 * g
    torch.testing.assert_close(w.detach(), torch.tensor([3.0, 3.5]))
    b = nn.Parameter(torch.tensor([1.0]))
    b.grad = torch.tensor([2.0])
    LARS([{"params": [b], "lars_exclude": True}], lr=0.1, momentum=0.0).step()
    torch.testing.assert_close(b.detach(), torch.tensor([0.8]))


def test_linear_probe_separable_and_chance() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(200) % 2
    x = torch.randn(200, 4, generator=g) + 4 * y[:, None].float()
    assert linear_probe(x[:150], y[:150], x[150:], y[150:], 2, epochs=20) == 100.0
    noise = torch.randn(200, 4, generator=g)
    assert linear_probe(noise[:150], y[:150], noise[150:], y[150:], 2, epochs=20) < 80.0


def test_linear_probe_trains_under_no_grad() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 8, generator=g)
    y = (x[:, 0] > 0).long()  # linearly separable
    with torch.no_grad():
        accuracy = linear_probe(x[:150], y[:150], x[150:], y[150:], num_classes=2)
    assert accuracy == linear_probe(x[:150], y[:150], x[150:], y[150:], num_classes=2)
    assert accuracy >= 70.0  # chance is 50
