"""Every choice a user makes, defined once. Widgets and the CLI take their options here.

Method names and their variants are not here: each method declares its own, and the
registry (compression.engine.methods) lists them.
"""

from enum import StrEnum


class DatasetName(StrEnum):
    DIGITS = "digits"  # scikit-learn's 8x8 digits: ships with the package, works offline
    MNIST = "mnist"
    FASHION_MNIST = "fashion_mnist"
    CIFAR10 = "cifar10"


class Arch(StrEnum):
    DENSE_REDUNDANT = "dense_redundant"
    LENET_300_100 = "lenet_300_100"
    LENET_5 = "lenet_5"
    LENET_5_CAFFE = "lenet_5_caffe"  # Han et al.'s LeNet-5: Caffe's conv 20 / conv 50 / fc 500, 431K parameters
    RESNET_20 = "resnet_20"  # He et al.'s CIFAR ResNet-20: 3 stages of 3 basic blocks, 16/32/64 filters, BN, Add
    MOBILENET_V2 = "mobilenet_v2"  # a narrow MobileNetV2: inverted residuals, depthwise convs, BN, ReLU6


class Schedule(StrEnum):
    POLYNOMIAL_DECAY = "polynomial_decay"
    CONSTANT_SPARSITY = "constant_sparsity"


class CentroidInit(StrEnum):
    LINEAR = "linear"
    RANDOM = "random"
    DENSITY_BASED = "density_based"
    KMEANS_PLUS_PLUS = "kmeans_plus_plus"


class ExportMode(StrEnum):
    FLOAT32 = "float32"
    FLOAT16 = "float16"
    INT8_DYNAMIC = "int8_dynamic"  # int8 weights, float activations
    INT8_FULL = "int8_full"  # int8 weights and activations, int8 input/output


class Granularity(StrEnum):
    PER_CHANNEL = "per_channel"  # one scale per output channel (what LiteRT's int8 and int4 kernels use)
    PER_TENSOR = "per_tensor"  # one scale for the whole layer


class LayerScope(StrEnum):
    ALL = "all"
    ALL_BUT_FIRST_LAST = "all_but_first_last"
    TYPES = "types"
    NAMES = "names"


class LrSchedule(StrEnum):
    CONSTANT = "constant"
    COSINE = "cosine"  # decays to zero over all training steps
    EXPONENTIAL = "exponential"  # multiplied by decay_rate every epoch


def options(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]
