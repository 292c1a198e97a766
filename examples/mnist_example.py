"""The pytorch/examples MNIST script as a task: its network, data and settings as the script has
them; what the script's train() and test() loops and its argparse did, the tool does
(docs/your-own-model.md shows the change).

    DATA/MNIST/raw/ holds the four MNIST files (the script's download=True fetches them there)

    python -m tuning.run --space examples/mnist_example.py --data-dir DATA --final

Its question: are the script's SGD settings (lr 0.01, momentum 0.5) the ones to use?
"""

from pathlib import Path

import torch.nn as nn
import torch.nn.functional as F
from torchvision import datasets, transforms


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5, 1)
        self.conv2 = nn.Conv2d(20, 50, 5, 1)
        self.fc1 = nn.Linear(4 * 4 * 50, 500)
        self.fc2 = nn.Linear(500, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(x, 2, 2)
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2, 2)
        x = x.view(-1, 4 * 4 * 50)
        x = F.relu(self.fc1(x))
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


def load_data(data_dir: Path) -> dict:
    transform = transforms.Compose([transforms.ToTensor(),
                                    transforms.Normalize((0.1307,), (0.3081,))])
    return {"train": datasets.MNIST(data_dir, train=True, download=True, transform=transform),
            "test": datasets.MNIST(data_dir, train=False, transform=transform)}


def build_model(params: dict) -> nn.Module:
    return Net()


loss = F.nll_loss  # the script's loss, on its log-softmax outputs

# the script's defaults: --batch-size 64, --epochs 10, --lr 0.01, --momentum 0.5
BASELINE = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.5, "batch_size": 64, "epochs": 10}

QUESTION = "Are the script's SGD settings (lr 0.01, momentum 0.5) right, or is Adam better?"
COMPARE = "optimizer"
BUDGET = {"max_epochs": 10, "grace_period": 1, "reduction_factor": 3, "num_samples": 16}


def define(trial, max_epochs: int) -> dict:
    optimizer = trial.suggest_categorical("optimizer", ["sgd", "adam"])
    if optimizer == "sgd":
        trial.suggest_float("lr", 1e-3, 0.1, log=True)
        trial.suggest_categorical("momentum", [0.0, 0.5, 0.9])
    else:
        trial.suggest_float("lr", 1e-4, 3e-3, log=True)
    trial.suggest_categorical("batch_size", [32, 64, 128])
    return {"epochs": max_epochs}
