"""DCGAN-28: the generator and discriminator of benchmark B1 (bench/README.md).

Used by bench/torch_b1.py at B1's sizes (the defaults below) and by
tests/ref/gen_gan_ref.py at reduced widths. The layers are created in the order of the C
network's nn_seq, so that PyTorch's default initialisation draws the same random numbers
whatever the caller, and C_LAYERS gives each layer its t2i name.

Generator(z, width):  Linear(z, 4w*7*7) -> BatchNorm1d -> ReLU -> view (4w, 7, 7)
                      -> ConvTranspose4x4 s2 p1 (4w, 2w) -> BatchNorm2d -> ReLU
                      -> ConvTranspose4x4 s2 p1 (2w, 1) -> tanh           (28x28 in [-1, 1])
Discriminator(width): Conv4x4 s2 p1 (1, w) -> LeakyReLU 0.2
                      -> Conv4x4 s2 p1 (w, 2w) -> BatchNorm2d -> LeakyReLU 0.2
                      -> flatten -> Linear(2w*7*7, 1)                     (one logit)
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

Z_DIM, G_WIDTH, D_WIDTH = 100, 64, 64  # B1


class Generator(nn.Module):
    def __init__(self, z_dim=Z_DIM, width=G_WIDTH):
        super().__init__()
        self.width = width
        self.fc = nn.Linear(z_dim, 4 * width * 49)                   # g.0
        self.bn0 = nn.BatchNorm1d(4 * width * 49)                    # g.1
        self.ct1 = nn.ConvTranspose2d(4 * width, 2 * width, 4, 2, 1)  # g.4
        self.bn1 = nn.BatchNorm2d(2 * width)                         # g.5
        self.ct2 = nn.ConvTranspose2d(2 * width, 1, 4, 2, 1)         # g.7

    def forward(self, z):
        h = torch.relu(self.bn0(self.fc(z))).view(-1, 4 * self.width, 7, 7)
        return torch.tanh(self.ct2(torch.relu(self.bn1(self.ct1(h)))))


class Discriminator(nn.Module):
    def __init__(self, width=D_WIDTH):
        super().__init__()
        self.c0 = nn.Conv2d(1, width, 4, 2, 1)             # d.0
        self.c2 = nn.Conv2d(width, 2 * width, 4, 2, 1)     # d.2
        self.bn3 = nn.BatchNorm2d(2 * width)               # d.3
        self.head = nn.Linear(2 * width * 49, 1)           # d.head

    def forward(self, x):
        h = F.leaky_relu(self.c0(x), 0.2)
        h = F.leaky_relu(self.bn3(self.c2(h)), 0.2)
        return self.head(h.flatten(1))


# t2i name -> (network, attribute): "g.<i>" / "d.<i>" are nn_seq layer indices
C_LAYERS = {"g.0": ("g", "fc"), "g.1": ("g", "bn0"), "g.4": ("g", "ct1"), "g.5": ("g", "bn1"),
            "g.7": ("g", "ct2"), "d.0": ("d", "c0"), "d.2": ("d", "c2"), "d.3": ("d", "bn3"),
            "d.head": ("d", "head")}


def c_layers(g, d):
    """{t2i layer name: module} for a generator g and discriminator d."""
    nets = {"g": g, "d": d}
    return {name: getattr(nets[net], attr) for name, (net, attr) in C_LAYERS.items()}
