"""What the commands of ``minivae`` share: the usage error, the exit statuses and the argument types of their flags."""
from __future__ import annotations

import argparse
import math
import resource


EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
EXIT_SIGNAL_BASE = 128   # a command stopped by signal N exits with 128 + N: 130 for SIGINT, 143 for SIGTERM


class UsageError(Exception):
    """The command was asked something it cannot do as asked (exit status 2)."""


def _number_type(convert, low, inclusive: bool, description: str, high=math.inf):
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}") from None
        if not (value >= low if inclusive else value > low) or not math.isfinite(value) or value > high:
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}")
        return value
    return parse


positive_int = _number_type(int, 1, True, "an integer >= 1")
non_negative_int = _number_type(int, 0, True, "an integer >= 0")
positive_float = _number_type(float, 0.0, False, "a number > 0")
seconds = _number_type(float, 0.0, False, "a number of seconds > 0, at most a day (86400)", high=86_400)


def path(text: str) -> str:
    """A file or directory path: any text but the empty one (which ``pathlib`` would read as ".")."""
    if text == "":
        raise argparse.ArgumentTypeError("expected a path, got an empty one")
    return text


# ----------------------------------------------------------------------------- memory
def available_memory() -> int | None:
    """Bytes of memory this process can still take: the least of the system's ``MemAvailable``
    (``/proc/meminfo``), what its cgroup's ``memory.max`` leaves (a container's limit) and its
    address-space limit (``ulimit -v``); None where none of these can be told."""
    limits = []
    meminfo = _read("/proc/meminfo")
    for line in (meminfo or "").splitlines():
        if line.startswith("MemAvailable:"):
            limits.append(int(line.split()[1]) * 1024)
    maximum, current = _read("/sys/fs/cgroup/memory.max"), _read("/sys/fs/cgroup/memory.current")
    if maximum and current and maximum.strip().isdigit() and current.strip().isdigit():
        limits.append(max(int(maximum) - int(current), 0))
    address_space = resource.getrlimit(resource.RLIMIT_AS)[0]
    if address_space != resource.RLIM_INFINITY:
        limits.append(address_space)
    return min(limits) if limits else None


def _read(name: str) -> str | None:
    try:
        with open(name) as file:
            return file.read()
    except OSError:
        return None


def require_memory(command: str, needed: int, asked: str) -> None:
    """Raise ``UsageError`` if ``needed`` bytes (a lower bound of what ``asked``, the flags, make the
    command hold at once) exceed the memory available, so that the command stops at once with one
    line instead of being killed by the system's out-of-memory killer."""
    available = available_memory()
    if available is not None and needed > available:
        raise UsageError(f"minivae {command}: error: {asked} needs at least {_bytes(needed)} of memory, and "
                         f"{_bytes(available)} are available: ask for less")


def vae_parameters(input_dim: int, hidden, latent_dim: int, encoder_only: bool = False) -> int:
    """The number of parameters of ``VAE(input_dim, hidden, latent_dim)`` (a weight matrix and a bias
    per layer): the encoder's layers and its two heads (μ and log σ²), then the decoder's layers."""
    encoder = [input_dim, *hidden]
    decoder = [latent_dim, *reversed(hidden), input_dim]
    layers = list(zip(encoder, encoder[1:])) + [(hidden[-1], latent_dim)] * 2
    if not encoder_only:
        layers += list(zip(decoder, decoder[1:]))
    return sum((fan_in + 1) * fan_out for fan_in, fan_out in layers)


def vae_activations(input_dim: int, hidden, latent_dim: int, rows: int) -> int:
    """float32 values of one forward pass of ``rows`` digits (one z each) through the VAE's layers."""
    return rows * (2 * sum(hidden) + 3 * latent_dim + 2 * input_dim)


def _bytes(count: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            return f"{count:,.0f} {unit}" if unit == "bytes" else f"{count:,.1f} {unit}"
        count /= 1000
