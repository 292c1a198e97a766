"""A text classifier trained on batches of dicts, Hugging Face's way: its own training and
evaluation steps, a collate function that pads each batch, bf16 autocast and gradient clipping.

The data are generated here, sentences of 4 to 24 tokens of a 64-word vocabulary: a sentence is
positive when it holds more of the words 1 to 8 than of the words 9 to 16, with 10% of the labels
flipped. The model averages its tokens' embeddings (padding masked out) and classifies them.

    python -m tuning.run --space examples/text_classifier.py --final

Its question: AdamW or SGD with momentum, at what learning rate and clipping?
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

VOCAB, PAD = 64, 0
HYPERPARAMETERS = {"dim": 32}


class Sentences(Dataset):
    """Items as dicts: {"input_ids": a 1-D tensor of token ids, "labels": 0 or 1}."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for _ in range(n):
            ids = torch.randint(1, VOCAB, (int(torch.randint(4, 25, (1,), generator=g)),),
                                generator=g)
            positive = int(((ids >= 1) & (ids <= 8)).sum() > ((ids >= 9) & (ids <= 16)).sum())
            if torch.rand(1, generator=g).item() < 0.1:
                positive = 1 - positive
            self.items.append({"input_ids": ids, "labels": positive})

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def collate_fn(items: list) -> dict:
    """The batch's sentences padded to its longest, with the mask of their real tokens."""
    ids = nn.utils.rnn.pad_sequence([item["input_ids"] for item in items], batch_first=True,
                                    padding_value=PAD)
    return {"input_ids": ids, "attention_mask": ids != PAD,
            "labels": torch.tensor([item["labels"] for item in items])}


class MeanOfEmbeddings(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, dim, padding_idx=PAD)
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 2))

    def forward(self, input_ids, attention_mask):
        mask = attention_mask.unsqueeze(-1).to(self.embed.weight.dtype)
        pooled = (self.embed(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self.head(pooled)


def load_data(data_dir) -> dict:
    return {"train": Sentences(2000, seed=0), "val": Sentences(500, seed=1),
            "test": Sentences(500, seed=2)}


def build_model(params: dict) -> nn.Module:
    return MeanOfEmbeddings(params["dim"])


def training_step(model, batch):
    logits = model(batch["input_ids"], batch["attention_mask"])
    return F.cross_entropy(logits, batch["labels"])


def evaluation_step(model, batch):
    return model(batch["input_ids"], batch["attention_mask"]), batch["labels"]


BASELINE = {"optimizer": "adamw", "lr": 1e-3, "batch_size": 32, "precision": "bf16",
            "max_grad_norm": 1.0, "epochs": 8}

QUESTION = "AdamW or SGD with momentum, at what learning rate and clipping?"
COMPARE = "optimizer"
BUDGET = {"max_epochs": 8, "grace_period": 2, "reduction_factor": 2, "num_samples": 12}


def define(trial, max_epochs: int) -> dict:
    optimizer = trial.suggest_categorical("optimizer", ["adamw", "sgd"])
    if optimizer == "adamw":
        trial.suggest_float("lr", 3e-4, 1e-2, log=True)
    else:
        trial.suggest_float("lr", 1e-2, 1.0, log=True)
        trial.suggest_categorical("momentum", [0.0, 0.9])
    trial.suggest_categorical("max_grad_norm", [0.5, 1.0, 5.0])
    trial.suggest_categorical("batch_size", [32, 64])
    return {"epochs": max_epochs, "precision": "bf16"}
