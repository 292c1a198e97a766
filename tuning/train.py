"""Train one configuration on the whole training set, evaluating on the test set after each epoch.

    python -m tuning.train --config tutorial.json
    python -m tuning.train --config runs/sgd_vs_adam/best_config.json   # writes runs/sgd_vs_adam/final/

Writes model.pt (the state dict), final_metrics.json, config.json and curve.png to --output.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from results.cli import HelpFormatter, fail
from results.rundir import (BEST_CONFIG_FILE, FINAL_DIR, FINAL_METRICS_FILE, RUN_FILE, write_atomic,
                            write_json)
from trainables.config import BOOKKEEPING_KEYS, ConfigError, TrainConfig, parse_config
from trainables.data import DataError, load_dataset
from trainables.loop import Trainer, is_diverged, to_device

PROG = "python -m tuning.train"


def read_config(path: Path) -> TrainConfig:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} is not valid JSON: {err}") from None
    return parse_config(raw, ignore=BOOKKEEPING_KEYS)


def default_output(config_path: Path) -> Path:
    """A run's best_config.json trains into the run's final/; any other config into runs/<name>/."""
    if (config_path.parent / RUN_FILE).is_file():
        return config_path.parent / FINAL_DIR
    return Path("runs") / f"train-{config_path.stem}"


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str) -> None:
    """A one-line ConfigError for a device this machine does not have."""
    if not device.startswith("cuda"):
        return
    if not torch.cuda.is_available():
        raise ConfigError(f"--device {device} asked for, but no CUDA device is available")
    index = device.partition(":")[2]
    count = torch.cuda.device_count()
    if index and (not index.isdigit() or int(index) >= count):
        have = ", ".join(f"cuda:{i}" for i in range(count))
        raise ConfigError(f"--device {device} asked for, but this machine has {count} CUDA "
                          f"device{'s' if count != 1 else ''} ({have})")


def plot_curve(epochs: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [e["epoch"] for e in epochs]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax_loss.plot(x, [e["train_loss"] for e in epochs], "o-", label="train")
    ax_loss.plot(x, [e["test_loss"] for e in epochs], "o-", label="test")
    ax_loss.set(xlabel="epoch", ylabel="average loss", title="loss")
    ax_loss.legend()
    ax_acc.plot(x, [100 * e["test_accuracy"] for e in epochs], "o-", color="tab:green")
    ax_acc.set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy")
    fig.suptitle(title)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def fit_with_progress(trainer: Trainer, train_xy: tuple[torch.Tensor, torch.Tensor],
                      test_xy: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
    """One epoch, printing the tutorial's loss line every 100 batches (beside a progress bar on a
    terminal)."""
    size, batch_size = len(train_xy[1]), trainer.config.batch_size
    bar = None
    if sys.stdout.isatty():
        from tqdm import tqdm

        bar = tqdm(total=size, unit="img", leave=False, dynamic_ncols=True)

    def on_batch(batch: int, loss: torch.Tensor, current: int, size: int) -> None:
        if bar is not None:
            bar.update(min(batch_size, size - bar.n))
        if batch % 100 == 0:
            line = f"loss: {loss.item():>7f}  [{current:>5d}/{size:>5d}]"
            bar.write(line) if bar is not None else print(line, flush=True)

    metrics = trainer.fit_epoch(train_xy, test_xy, on_batch, holdout_name="test")
    if bar is not None:
        bar.close()
    return metrics


def train(config: TrainConfig, output: Path, data_dir: Path | None, device: str) -> dict[str, Any]:
    """Train and evaluate as the tutorial does, print its familiar lines, and write the results."""
    train_split, test_split = load_dataset(config.dataset, data_dir)
    train_xy, test_xy = to_device(train_split, device), to_device(test_split, device)
    trainer = Trainer(config, device)
    history = []
    for epoch in range(1, config.epochs + 1):
        print(f"Epoch {epoch}\n-------------------------------")
        metrics = fit_with_progress(trainer, train_xy, test_xy)
        print(f"Test Error: \n Accuracy: {100 * metrics['test_accuracy']:>0.1f}%, "
              f"Avg loss: {metrics['test_loss']:>8f} \n", flush=True)
        history.append({**metrics, "seconds": round(metrics["seconds"], 3)})
        if is_diverged(metrics):
            print(f"Stopped: the loss is {metrics['train_loss']} after epoch {epoch} (diverged); "
                  "lower the learning rate.")
            break
    result = {
        "config": config.to_dict(),
        "device": str(device),
        "epochs": history,
        "test_accuracy": history[-1]["test_accuracy"],
        "test_loss": history[-1]["test_loss"],
        "diverged": is_diverged(metrics),
        "seconds": round(sum(e["seconds"] for e in history), 3),
    }
    write_results(result, trainer, output)
    return result


def write_results(result: dict[str, Any], trainer: Trainer, output: Path) -> None:
    """model.pt, config.json, curve.png, then final_metrics.json: its presence means the rest is
    there."""
    config = trainer.config
    write_atomic(output / "model.pt", lambda tmp: torch.save(trainer.model.state_dict(), tmp))
    write_json(output / "config.json", config.to_dict())
    plot_curve(result["epochs"], output / "curve.png",
               f"{config.model} / {config.optimizer} lr={config.lr:g} batch={config.batch_size}")
    write_json(output / FINAL_METRICS_FILE, result)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--config", type=Path, required=True,
                        help="JSON file of settings: optimizer and lr, and optionally dataset, model, "
                             "batch_size, epochs, momentum, weight_decay, schedule, shuffle, seed")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"where to write the results (default: the run's {FINAL_DIR}/ for a "
                             f"{BEST_CONFIG_FILE}, else runs/train-<config name>)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder with the dataset's IDX files (default: a per-user cache folder)")
    parser.add_argument("--device", default=default_device(),
                        help="cpu or cuda (default: cuda when available, else cpu)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        config = read_config(args.config)
        check_device(args.device)
        output = args.output or default_output(args.config)
        started = time.perf_counter()
        result = train(config, output, args.data_dir, args.device)
    except (ConfigError, DataError) as err:
        fail(PROG, str(err))
    print(f"Test accuracy {100 * result['test_accuracy']:.2f}% after {len(result['epochs'])} epochs "
          f"({time.perf_counter() - started:.0f} s); results in {output}/")


if __name__ == "__main__":
    main()
