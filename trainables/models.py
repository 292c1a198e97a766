"""The built-in tasks' models: the tutorial's MLP and the MNIST example's CNN, found by name in
MODELS."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class MLP(nn.Module):
    """The "Optimizing Model Parameters" tutorial's NeuralNetwork: 784-512-512-10 with ReLU; the
    hidden layers' width and a dropout after each of them can be tuned (with dropout 0 it is the
    tutorial's network, layer for layer)."""

    def __init__(self, width: int = 512, dropout: float = 0.0) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        def drop() -> list[nn.Module]:
            return [nn.Dropout(dropout)] if dropout > 0 else []

        self.linear_relu_stack = nn.Sequential(
            nn.Linear(28 * 28, width),
            nn.ReLU(),
            *drop(),
            nn.Linear(width, width),
            nn.ReLU(),
            *drop(),
            nn.Linear(width, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_relu_stack(self.flatten(x))


class CNN(nn.Module):
    """The pytorch/examples MNIST Net: two 5x5 convolutions with max-pooling, then 800-500-10."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5, 1)
        self.conv2 = nn.Conv2d(20, 50, 5, 1)
        self.fc1 = nn.Linear(4 * 4 * 50, 500)
        self.fc2 = nn.Linear(500, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2, 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2, 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)  # logits, for cross-entropy


MODELS: dict[str, type[nn.Module]] = {"mlp": MLP, "cnn": CNN}
