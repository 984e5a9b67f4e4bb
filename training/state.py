"""Resumable training state: model, optimizer, scheduler, loss scaler, step, best dev figure, log.

Saved under `<out>/state/`: `trainer.pt` by rank 0 and `rng-<rank>.pt` (each rank's random
generator, i.e. its dropout stream) by every rank. Batches need no saving: they are a function of
(seed, step). A resumed run refuses settings that would change what it trains, and (in
`training.loop`) a groups file whose sha256 differs.

Example:
    >>> sorted(RESUME_MAY_DIFFER)[:3]
    ['compile', 'eval_batch_size', 'eval_every']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from es_rerank.errors import ConfigError
from es_rerank.training.config import FineTuningConfig

# Settings a resumed run may change: they affect speed, logging or evaluation, not the weights.
RESUME_MAY_DIFFER = {"num_workers", "log_every", "save_every", "eval_every", "eval_batch_size", "compile", "notes"}


def state_dir(out_dir: Path) -> Path:
    return out_dir / "state"


def has_state(out_dir: Path) -> bool:
    return (state_dir(out_dir) / "trainer.pt").is_file()


def save_state(out_dir: Path, rank: int, payload: dict[str, Any] | None) -> None:
    """Rank 0 passes the trainer payload; every rank saves its RNG state."""
    folder = state_dir(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state()
    torch.save(rng, folder / f"rng-{rank}.pt")
    if payload is not None:
        tmp = folder / "trainer.pt.tmp"
        torch.save(payload, tmp)
        tmp.replace(folder / "trainer.pt")  # a crash mid-write leaves the previous state intact


def load_state(out_dir: Path, rank: int, config: FineTuningConfig, map_location: torch.device) -> dict[str, Any]:
    """The saved trainer payload; restores this rank's RNG. Raises if the settings changed."""
    folder = state_dir(out_dir)
    payload = torch.load(folder / "trainer.pt", map_location=map_location, weights_only=False)
    # a setting added since the state was saved trained as its default then
    saved, now = {**type(config)(base_model=config.base_model).to_dict(), **payload["config"]}, config.to_dict()
    changed = sorted(k for k in now if k not in RESUME_MAY_DIFFER and saved.get(k) != now[k])
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in changed)
        raise ConfigError(f"cannot resume {out_dir}: settings changed ({detail})",
                          hint="resume with the saved recipe (out/recipe.yaml) or start a new output folder")
    rng_path = folder / f"rng-{rank}.pt"
    if rng_path.is_file():
        rng = torch.load(rng_path, weights_only=False)
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
    return payload
