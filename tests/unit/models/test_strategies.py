"""The study's strategies: Table 3 counts, which parameters train, prompt modes, round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import peft_config
from medseg.errors import MedsegError
from medseg.models import peft
from medseg.models.checkpoints import export_checkpoint, load_exported, load_sam_weights
from medseg.models.factory import model_spec
from medseg.models.report import count_strategy, paper_table3
from medseg.models.segmenter import SamSegmenter, select_highest_confidence, select_oracle
from medseg.models.strategies import Strategy, all_strategies, apply_strategy, parse_strategy

SIZE = 64
METHODS = ("vanilla", "adapter", "lora", "adapterall")
FAST_BACKBONES = ("vit_t", "vit_b")


def _strategies(backbones: tuple[str, ...]) -> list[str]:
    return [f"{b}_{c}_{m}" for b in backbones for c in ("dec", "endec") for m in METHODS
            if not (m == "adapterall" and c == "dec")]


def _build(strategy_id: str, mode: str = "automated", seed: int = 0, candidates: bool = False) -> SamSegmenter:
    torch.manual_seed(seed)
    strategy = parse_strategy(strategy_id)
    model = SamSegmenter(strategy.backbone, SIZE, 2, mode, candidates=candidates)
    apply_strategy(model, strategy, peft_config())
    return model


@pytest.mark.parametrize("strategy", all_strategies(), ids=lambda s: s.name)
def test_table3_counts_are_reproduced(strategy: Strategy) -> None:
    """Total and trainable parameters to 0.01M as printed in Table 3 (paper convention, see
    medseg.models.report); the truly trainable count differs only by the never-trained depth adapters."""
    row = count_strategy(strategy, peft_config())
    paper = paper_table3()[(strategy.backbone, strategy.component, strategy.method)]
    assert round(row.paper_total / 1e6, 2) == pytest.approx(float(paper["total_m"]))
    assert round(row.paper_trainable / 1e6, 2) == pytest.approx(float(paper["trainable_m"]))
    depth_adapters = strategy.component == "endec" and strategy.method == "adapter" and strategy.backbone != "vit_t"
    assert (row.paper_extra > 0) == depth_adapters


def test_truly_trainable_counts_of_the_adapter_rows_and_a_star() -> None:
    config = peft_config()
    assert count_strategy(Strategy("vit_b", "endec", "adapter"), config).trainable == 2_499_328
    assert count_strategy(Strategy("vit_b", "endec", "adapter"), config).paper_extra == 1_183_488
    assert count_strategy(Strategy("vit_h", "endec", "adapter"), config).paper_trainable == 9_981_952
    a_star = count_strategy(Strategy("vit_b", "endec", "adapterall"), config)
    assert a_star.trainable == 12 * 2 * 295_872 + 132_352  # two adapters in every block + decoder


def test_vit_h_adapters_sit_in_the_first_two_and_last_two_blocks() -> None:
    with torch.device("meta"):
        model = SamSegmenter("vit_h", 1024, 2)
    apply_strategy(model, parse_strategy("vit_h_endec_adapter"), peft_config())
    adapted = [i for i, block in enumerate(model.image_encoder.blocks) if isinstance(block.attn, peft.AdapterAfter)]
    assert adapted == [0, 1, 30, 31]
    assert all(sum(isinstance(m, peft.Adapter) for m in model.image_encoder.blocks[i].modules()) == 2
               for i in adapted)  # no third, 3D-only depth adapter


def test_tinyvit_lora_updates_only_queries_and_values() -> None:
    model = _build("vit_t_endec_lora")
    attention = peft.encoder_blocks(model.image_encoder)[3].attn
    qkv = attention.qkv
    torch.nn.init.normal_(qkv.lora_q.b.weight)
    torch.nn.init.normal_(qkv.lora_v.b.weight)
    x = torch.randn(2, 5, qkv.base.in_features)
    delta = (qkv(x) - qkv.base(x)).view(2, 5, attention.num_heads, -1)
    q, k, v = delta.split([attention.key_dim, attention.key_dim, attention.d], dim=3)
    assert q.abs().min() > 0 and v.abs().min() > 0
    assert k.abs().max() == 0


@pytest.mark.parametrize("strategy_id", ["vit_t_endec_lora", "vit_t_dec_lora", "vit_b_endec_lora"])
def test_lora_starts_as_the_identity(strategy_id: str) -> None:
    strategy = parse_strategy(strategy_id)
    torch.manual_seed(0)
    model = SamSegmenter(strategy.backbone, SIZE, 2).eval()
    images = torch.rand(1, 3, SIZE, SIZE) * 255
    with torch.no_grad():
        before = model(images)
        apply_strategy(model, strategy, peft_config())
        model.eval()
        assert torch.allclose(model(images), before, atol=1e-5)


def _expected_trainable(name: str, strategy: Strategy) -> bool | None:
    """What the study's rules say about a parameter name; None where they say nothing simple."""
    if strategy.method == "vanilla":
        return name.startswith("mask_decoder.") or strategy.component == "endec"
    if strategy.method in ("adapter", "adapterall"):
        return ".adapter." in name and (strategy.component == "endec" or name.startswith("mask_decoder."))
    if ".lora" in name:
        return strategy.component == "endec" or name.startswith("mask_decoder.")
    if name.startswith("mask_decoder.transformer."):
        return False
    return None


@pytest.mark.parametrize("strategy_id", [
    *_strategies(FAST_BACKBONES), *(pytest.param(s, marks=pytest.mark.slow) for s in _strategies(("vit_h",)))])
def test_one_step_updates_exactly_the_intended_parameters(strategy_id: str) -> None:
    strategy = parse_strategy(strategy_id)
    model = _build(strategy_id)
    for name, parameter in model.named_parameters():
        expected = _expected_trainable(name, strategy)
        assert expected is None or parameter.requires_grad == expected, name
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    images = torch.rand(2, 3, SIZE, SIZE) * 255
    if strategy.component == "dec":
        assert not model.embed(images).requires_grad  # the frozen encoder builds no autograd graph
    model(images).logsumexp(dim=1).mean().backward()
    optimizer.step()
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            assert parameter.grad is None and torch.equal(parameter, before[name]), name
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert any(n.startswith("mask_decoder.") for n in changed)
    assert any(n.startswith("image_encoder.") for n in changed) == (strategy.component == "endec")


@pytest.mark.parametrize("strategy_id", [*_strategies(("vit_t",)), "vit_b_endec_lora", "vit_b_endec_adapter"])
def test_export_round_trip_gives_identical_outputs(strategy_id: str, tmp_path: Path) -> None:
    model = _build(strategy_id)
    with torch.no_grad():
        for parameter in model.parameters():  # LoRA starts at zero: make every weight matter
            parameter.add_(torch.randn_like(parameter) * 0.01)
    model.eval()
    export_checkpoint(model, tmp_path / "model.pt", model_spec(strategy_id, peft_config()), {})
    loaded, _ = load_exported(tmp_path / "model.pt")
    images = torch.rand(2, 3, SIZE, SIZE) * 255
    with torch.no_grad():
        assert torch.equal(model(images), loaded(images))
    assert [n for n, p in loaded.named_parameters() if p.requires_grad] == [
        n for n, p in model.named_parameters() if p.requires_grad]


@pytest.mark.parametrize("backbone", FAST_BACKBONES)
def test_candidate_models_give_three_masks_with_predicted_iou(backbone: str) -> None:
    embeddings = None
    for mode, prompts in (("point", torch.tensor([[10.0, 20.0], [30.0, 40.0]])),
                          ("box", torch.tensor([[4.0, 4.0, 30.0, 40.0], [10.0, 12.0, 50.0, 60.0]]))):
        model = _build(f"{backbone}_endec_vanilla", mode=mode, candidates=True).eval()
        assert not any(p.requires_grad for p in model.prompt_encoder.parameters())  # frozen in prompt modes
        embeddings = model.embed(torch.rand(2, 3, SIZE, SIZE) * 255) if embeddings is None else embeddings
        logits, iou = model.decode_all(embeddings, prompts)
        assert logits.shape == (2, 3, SIZE, SIZE) and iou.shape == (2, 3)
        with pytest.raises(MedsegError, match="no class outputs"):
            model(torch.rand(2, 3, SIZE, SIZE), prompts)


@pytest.mark.parametrize("mode", ["point", "box"])
def test_prompted_models_output_classes_and_check_their_prompts(mode: str) -> None:
    model = _build("vit_t_dec_vanilla", mode=mode).eval()
    prompts = torch.tensor([[8.0, 9.0, 40.0, 41.0]])[:, : 2 if mode == "point" else 4]
    with torch.no_grad():
        images = torch.rand(1, 3, SIZE, SIZE) * 255
        logits = model(images, prompts)
        assert logits.shape == (1, 2, SIZE, SIZE)
        moved = prompts.clone()
        moved[:, :2] += 16
        assert not torch.equal(logits, model(images, moved))  # the prompt reaches the decoder
    with pytest.raises(MedsegError, match="needs prompts of shape"):
        model(images)
    with pytest.raises(MedsegError, match="takes no prompts"):
        _build("vit_t_dec_vanilla")(images, prompts)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["automated", "point", "box"])
def test_vit_h_runs_in_every_mode(mode: str) -> None:
    model = _build("vit_h_endec_lora", mode=mode).eval()
    prompts = {"automated": None, "point": torch.tensor([[8.0, 8.0]]), "box": torch.tensor([[4.0, 4.0, 40.0, 40.0]])}
    with torch.no_grad():
        assert model(torch.rand(1, 3, SIZE, SIZE) * 255, prompts[mode]).shape == (1, 2, SIZE, SIZE)


def test_oracle_picks_the_best_candidate_where_confidence_misleads() -> None:
    truth = torch.zeros(1, 8, 8, dtype=torch.long)
    truth[:, 2:6, 2:6] = 1
    candidates = torch.full((1, 3, 8, 8), -1.0)
    candidates[0, 0, 0:2, 0:2] = 1.0  # wrong object, but most confident
    candidates[0, 1, 2:6, 2:6] = 1.0  # exact
    candidates[0, 2, 2:4, 2:6] = 1.0  # half
    iou = torch.tensor([[0.9, 0.5, 0.7]])

    def dice(logits: torch.Tensor) -> float:
        predicted = logits > 0
        return float(2 * (predicted & (truth > 0)).sum() / (predicted.sum() + (truth > 0).sum()))

    assert dice(select_oracle(candidates, truth)) == 1.0
    assert dice(select_highest_confidence(candidates, iou)) == 0.0


def test_oracle_is_never_worse_than_highest_confidence() -> None:
    torch.manual_seed(0)
    logits, iou = torch.randn(16, 3, 8, 8), torch.rand(16, 3)
    truth = (torch.rand(16, 8, 8) > 0.5).long()

    def dice(selected: torch.Tensor) -> torch.Tensor:
        predicted, target = selected > 0, truth > 0
        return 2 * (predicted & target).flatten(1).sum(1) / (predicted.flatten(1).sum(1) + target.flatten(1).sum(1))

    assert (dice(select_oracle(logits, truth)) >= dice(select_highest_confidence(logits, iou))).all()


def test_checkpoint_of_another_backbone_is_refused(tmp_path: Path) -> None:
    torch.save(SamSegmenter("vit_t", SIZE, 2).state_dict(), tmp_path / "mobile_sam.pt")
    model = SamSegmenter("vit_b", SIZE, 2)
    with pytest.raises(MedsegError, match=r"mobile_sam\.pt: does not match backbone 'vit_b': missing \[image_encoder"):
        load_sam_weights(model, tmp_path / "mobile_sam.pt")


def test_vit_b_weights_of_another_input_size_are_interpolated(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = SamSegmenter("vit_b", 2 * SIZE, 2)
    torch.save(source.state_dict(), tmp_path / "sam_vit_b.pth")
    model = SamSegmenter("vit_b", SIZE, 2)
    load_sam_weights(model, tmp_path / "sam_vit_b.pth")
    assert model.image_encoder.pos_embed.shape == (1, SIZE // 16, SIZE // 16, 768)
    assert torch.equal(model.image_encoder.blocks[0].mlp.lin1.weight, source.image_encoder.blocks[0].mlp.lin1.weight)
    assert torch.allclose(model.image_encoder.pos_embed.mean(), source.image_encoder.pos_embed.mean(), atol=1e-2)
