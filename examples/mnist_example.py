"""The pytorch/examples MNIST script as a task: its network, data and settings as the script has
them today (Adadelta at lr 1.0, its learning rate times 0.7 after each epoch, batch 64, 14
epochs); what the script's train() and test() loops and its argparse did, the tool does
(docs/your-own-model.md shows the change).

    DATA/MNIST/raw/ holds the four MNIST files (the script's download=True fetches them there)

    python -m tuning.run --space examples/mnist_example.py --data-dir DATA --final

Its question: are the script's Adadelta settings the ones to use, or does Adam train it better?
"""

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision import datasets, transforms


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        x = self.dropout1(F.max_pool2d(x, 2))
        x = self.dropout2(F.relu(self.fc1(torch.flatten(x, 1))))
        return F.log_softmax(self.fc2(x), dim=1)


def load_data(data_dir: Path) -> dict:
    transform = transforms.Compose([transforms.ToTensor(),
                                    transforms.Normalize((0.1307,), (0.3081,))])
    return {"train": datasets.MNIST(data_dir, train=True, download=True, transform=transform),
            "test": datasets.MNIST(data_dir, train=False, transform=transform)}


def build_model(params: dict) -> nn.Module:
    return Net()


loss = F.nll_loss  # the script's loss, on its log-softmax outputs

# the script's defaults: --batch-size 64, --epochs 14, --lr 1.0, --gamma 0.7; Adadelta, StepLR(1)
BASELINE = {"optimizer": "adadelta", "lr": 1.0, "schedule": "step", "step_size": 1,
            "gamma": 0.7, "batch_size": 64, "epochs": 14}

QUESTION = "Are the script's Adadelta settings (lr 1.0, x0.7 an epoch) right, or is Adam better?"
COMPARE = "optimizer"
BUDGET = {"max_epochs": 14, "grace_period": 1, "reduction_factor": 3, "num_samples": 16}


def define(trial, max_epochs: int) -> dict:
    optimizer = trial.suggest_categorical("optimizer", ["adadelta", "adam"])
    trial.suggest_float("lr", *((0.1, 3.0) if optimizer == "adadelta" else (1e-4, 3e-3)), log=True)
    trial.suggest_float("gamma", 0.5, 1.0)
    trial.suggest_categorical("batch_size", [32, 64, 128])
    return {"epochs": max_epochs, "schedule": "step", "step_size": 1}
