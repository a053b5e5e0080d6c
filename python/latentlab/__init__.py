"""latentlab: train variational autoencoders and make their latent spaces
visible, measurable and editable.

Every function here runs the Rust code the ``latentlab`` command line runs,
on numpy arrays (float32 or float64, any memory order, or anything with
``__array__``, torch tensors included) and on models: latentlab's own
checkpoints, ONNX graphs, or a PyTorch model in memory through
:meth:`Model.from_torch`.

Long work releases the GIL and stops on Ctrl-C. Bad input raises
``ValueError`` or ``TypeError`` with the message the command line prints.

Examples
--------
>>> import numpy as np, latentlab
>>> latentlab.interpolate(np.zeros(8), np.ones(8), steps=5, method="linear").shape
(5, 8)
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any, Callable, Optional, Sequence, Tuple, Union

import numpy as np

from . import _latentlab as _ll

__version__: str = _ll.version()

__all__ = [
    "Model",
    "analogy",
    "attribute_vector",
    "diagnose",
    "disentanglement",
    "embed",
    "geodesic",
    "holes",
    "interpolate",
    "load_data",
    "report",
    "shell_stats",
    "train",
    "traverse",
    "trustworthiness",
]


# ---------------------------------------------------------------- arrays


def _array(x: Any, name: str, ndim: Optional[int] = None) -> np.ndarray:
    """`x` as a float32 or float64 numpy array, without a copy where the
    input already is one (a CPU torch tensor shares its memory)."""
    if hasattr(x, "detach") and hasattr(x, "numpy"):  # torch.Tensor
        x = x.detach()
        if hasattr(x, "cpu"):
            x = x.cpu()
        x = x.numpy()
    try:
        a = np.asarray(x)
    except Exception as e:  # noqa: BLE001 - any conversion failure
        raise TypeError(f"{name}: cannot be read as an array ({e})") from e
    if a.dtype.kind in "biu":
        a = a.astype(np.float64)
    elif a.dtype.kind == "f" and a.dtype.itemsize not in (4, 8):
        a = a.astype(np.float32)
    elif a.dtype.kind != "f":
        raise TypeError(
            f"{name}: holds {a.dtype} values; give real numbers (float32 or float64)"
        )
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {a.shape}")
    return a


def _rows(x: Any, name: str) -> np.ndarray:
    """`x` (N × ...) as an N × D matrix: a view where the memory allows."""
    a = _array(x, name)
    if a.ndim < 2:
        raise ValueError(f"{name}: expected N rows of inputs, got shape {a.shape}")
    return a.reshape(a.shape[0], -1)


def _classes(x: Any, name: str, n: int) -> np.ndarray:
    a = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name}: expected N × K factor classes, got shape {a.shape}")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ValueError(f"{name}: factor classes must be whole numbers")
    elif a.dtype.kind not in "biu":
        raise TypeError(f"{name}: holds {a.dtype} values; give integer classes")
    if a.shape[0] != n:
        raise ValueError(f"{name}: {a.shape[0]} rows of factors for {n} inputs")
    return np.ascontiguousarray(a, dtype=np.int64)


def _image_shape(shape: Tuple[int, ...]) -> Tuple[int, int, int]:
    """(C, H, W) of one input of shape `shape` (without the batch axis)."""
    if len(shape) == 3:
        return (int(shape[0]), int(shape[1]), int(shape[2]))
    if len(shape) == 2:
        return (1, int(shape[0]), int(shape[1]))
    if len(shape) == 1:
        return (1, 1, int(shape[0]))
    raise ValueError(
        f"inputs of shape {shape} per item; give C×H×W images, H×W images or D-vectors"
    )


# ---------------------------------------------------------------- models


class Model:
    """A model latentlab can measure and move through.

    Make one with :meth:`load` (a latentlab checkpoint, or a PyTorch
    state_dict in safetensors), :meth:`from_onnx`, :meth:`from_torch`
    (an encoder and a decoder in memory), ``Model(obj)`` for any object with
    ``encode(x) -> (mu, logvar)`` and ``decode(z)``, or :func:`train`.

    Parameters
    ----------
    obj : object, optional
        Has ``encode(x) -> (mu, logvar)`` and ``decode(z) -> x_mean``. With a
        ``torch.nn.Module``, inputs go to it as torch tensors on its device.
    encoder, decoder : callable, optional
        Instead of `obj`: ``encoder(x) -> (mu, logvar)``, ``decoder(z)``.
    input_shape : tuple of int, optional
        The shape of one input as the encoder takes it, e.g. ``(3, 64, 64)``;
        by default the shape of the data first given to the model.
    latent_dim : int, optional
        By default found by encoding one input.
    batch_size : int
        Rows per callback call.
    decoder_output : {'mean', 'logits'}
        What the decoder returns: the mean of p(x|z), or Bernoulli logits
        (their sigmoid is the mean).
    torch : bool, optional
        Whether the callbacks take torch tensors; by default, whether `obj`
        is a ``torch.nn.Module`` (always with :meth:`from_torch`).
    device : str, optional
        The torch device of the callbacks' inputs; by default the module's.
    """

    def __init__(
        self,
        obj: Any = None,
        *,
        encoder: Optional[Callable[..., Any]] = None,
        decoder: Optional[Callable[..., Any]] = None,
        input_shape: Optional[Sequence[int]] = None,
        latent_dim: Optional[int] = None,
        batch_size: int = 256,
        decoder_output: str = "mean",
        torch: Optional[bool] = None,
        device: Any = None,
    ) -> None:
        self._native = None
        if obj is not None:
            if encoder is not None or decoder is not None:
                raise TypeError("give obj, or encoder= and decoder=, not both")
            if not callable(getattr(obj, "encode", None)):
                raise TypeError(
                    f"{type(obj).__name__} has no encode(x) method; give an object with "
                    "encode(x) -> (mu, logvar) and decode(z)"
                )
            encoder = obj.encode
            decoder = getattr(obj, "decode", None)
            if torch is None:
                torch = _is_torch_module(obj)
            if device is None and torch:
                device = _module_device(obj)
        elif encoder is None:
            raise TypeError("give obj, or encoder= (and decoder=)")
        if decoder_output not in ("mean", "logits"):
            raise ValueError(
                f"--decoder-output: unknown output `{decoder_output}`; expected logits or mean"
            )
        if int(batch_size) < 1:
            raise ValueError(f"batch_size: {batch_size} must be at least 1")
        self._encoder = encoder
        self._decoder = decoder
        self._input_shape = tuple(int(s) for s in input_shape) if input_shape else None
        self._latent_dim = int(latent_dim) if latent_dim is not None else None
        self._batch = int(batch_size)
        self._logits = decoder_output == "logits"
        self._torch = bool(torch)
        self._device = device

    # -- constructors

    @classmethod
    def from_torch(
        cls,
        encoder: Callable[..., Any],
        decoder: Optional[Callable[..., Any]] = None,
        **kwargs: Any,
    ) -> "Model":
        """A PyTorch model in memory: ``encoder(x) -> (mu, logvar)`` and
        ``decoder(z)`` on torch tensors, called under ``torch.no_grad()``.

        Parameters
        ----------
        encoder, decoder : callable
            Functions or ``nn.Module`` s; the device is the encoder module's
            unless ``device=`` says otherwise.
        **kwargs
            As for :class:`Model` (``input_shape``, ``batch_size``,
            ``decoder_output``, ``device``).
        """
        if kwargs.get("device") is None and _is_torch_module(encoder):
            kwargs["device"] = _module_device(encoder)
        kwargs["torch"] = True
        return cls(encoder=encoder, decoder=decoder, **kwargs)

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "Model":
        """Opens a checkpoint: latentlab's, or a PyTorch state_dict in
        safetensors that follows DESIGN.md's layouts."""
        m = cls.__new__(cls)
        m._native = _ll.NativeModel.load(os.fspath(path))
        return m

    @classmethod
    def from_onnx(
        cls,
        encoder: Union[str, os.PathLike],
        decoder: Optional[Union[str, os.PathLike]] = None,
        decoder_output: str = "logits",
    ) -> "Model":
        """ONNX graphs: an encoder from inputs to (mu, logvar) and a decoder
        from codes to inputs, as ``latentlab --encoder/--decoder`` opens them."""
        m = cls.__new__(cls)
        m._native = _ll.NativeModel.onnx(
            os.fspath(encoder),
            None if decoder is None else os.fspath(decoder),
            decoder_output,
        )
        return m

    # -- properties

    @property
    def latent_dim(self) -> Optional[int]:
        """Latent size (None for a callback model not yet run)."""
        if self._native is not None:
            return self._native.latent_dim
        return self._latent_dim

    @property
    def input_shape(self) -> Optional[Tuple[int, ...]]:
        """The shape of one input, when known."""
        if self._native is not None:
            hw = self._native.image_shape
            d = self._native.input_dim
            if hw is None:
                return (d,)
            c = d // (hw[0] * hw[1])
            return (c, hw[0], hw[1])
        return self._input_shape

    def __repr__(self) -> str:
        if self._native is not None:
            return f"latentlab.Model({self._native.describe()})"
        kind = "torch" if self._torch else "callbacks"
        return f"latentlab.Model({kind}, input_shape={self._input_shape}, latent_dim={self._latent_dim})"

    # -- encode / decode / save

    def encode(self, x: Any) -> Tuple[np.ndarray, np.ndarray]:
        """Posterior means and log-variances (N × d each, float32) of inputs
        `x` (N × input_shape, or N × D)."""
        if self._native is not None:
            return self._native.encode(_rows(x, "x"))
        a = _array(x, "x")
        self._ensure(a.shape[1:])
        return self._encode_flat(np.ascontiguousarray(a.reshape(a.shape[0], -1), np.float32))

    def decode(self, z: Any) -> np.ndarray:
        """The decoder's mean (N × input_shape, float32) of codes `z` (N × d)."""
        z = _array(z, "z", 2)
        if self._native is not None:
            out = self._native.decode(z)
        else:
            if self._input_shape is None:
                raise ValueError("the model's input shape is not known yet; give input_shape=")
            out = self._decode_flat(np.ascontiguousarray(z, np.float32))
        shape = self.input_shape
        return out.reshape((out.shape[0],) + tuple(shape)) if shape else out

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Writes a latentlab checkpoint (atomically) that the command line
        and :meth:`load` read."""
        if self._native is None:
            raise TypeError(
                "a model given as callbacks is saved by its own framework "
                "(torch.save); latentlab saves the models it trains"
            )
        self._native.save(os.fspath(path))

    # -- the callbacks latentlab calls (inputs flat, N × D float32)

    def _ensure(self, item_shape: Tuple[int, ...]) -> None:
        if self._input_shape is None:
            self._input_shape = tuple(int(s) for s in item_shape)
        if self._latent_dim is None:
            probe = np.zeros((1, int(np.prod(self._input_shape))), np.float32)
            mu, _ = self._encode_flat(probe)
            self._latent_dim = int(mu.shape[1])

    def _handle(self, item_shape: Tuple[int, ...]) -> Any:
        """The Rust object standing for this model."""
        if self._native is not None:
            return self._native
        self._ensure(item_shape)
        c, h, w = _image_shape(self._input_shape)
        return _ll.CallbackModel(self, self._latent_dim, c, h, w)

    def _call(self, fn: Callable[..., Any], x: np.ndarray, shape: Tuple[int, ...]) -> Any:
        batch = x.reshape((x.shape[0],) + tuple(shape))
        if not self._torch:
            return fn(batch)
        import torch

        t = torch.from_numpy(np.ascontiguousarray(batch))
        if self._device is not None:
            t = t.to(self._device)
        with torch.no_grad():
            return fn(t)

    def _encode_flat(self, x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        mus, lvs = [], []
        for s in range(0, x.shape[0], self._batch):
            r = self._call(self._encoder, x[s : s + self._batch], self._input_shape)
            if not (isinstance(r, (tuple, list)) and len(r) == 2):
                raise TypeError(
                    f"the encoder returned {type(r).__name__}; it must return (mu, logvar)"
                )
            n = min(self._batch, x.shape[0] - s)
            mus.append(_array(r[0], "the encoder's mu").reshape(n, -1))
            lvs.append(_array(r[1], "the encoder's logvar").reshape(n, -1))
        mu = np.concatenate(mus).astype(np.float32, copy=False)
        lv = np.concatenate(lvs).astype(np.float32, copy=False)
        return mu, lv

    def _decode_flat(self, z: np.ndarray) -> np.ndarray:
        if self._decoder is None:
            raise TypeError("the model has no decoder; give decoder= (or obj.decode)")
        outs = []
        for s in range(0, z.shape[0], self._batch):
            part = z[s : s + self._batch]
            r = self._call(self._decoder, part, (part.shape[1],))
            if isinstance(r, (tuple, list)):
                r = r[0]
            outs.append(_array(r, "the decoder's output").reshape(part.shape[0], -1))
        out = np.concatenate(outs).astype(np.float32, copy=False)
        if self._logits:
            out = 1.0 / (1.0 + np.exp(-out))
        return np.ascontiguousarray(out, np.float32)


def _is_torch_module(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def _module_device(m: Any) -> Any:
    try:
        return next(m.parameters()).device
    except (StopIteration, AttributeError, TypeError):
        return None


def _model(m: Any) -> Model:
    if isinstance(m, Model):
        return m
    if isinstance(m, (str, os.PathLike)):
        return Model.load(m)
    return Model(m)


# ---------------------------------------------------------------- geometry


def interpolate(z1: Any, z2: Any, steps: int = 10, method: str = "slerp") -> np.ndarray:
    """The path of `steps` codes from `z1` to `z2`, endpoints included.

    Parameters
    ----------
    z1, z2 : array_like, shape (d,)
    steps : int
    method : {'linear', 'slerp', 'seed-slerp', 'constant-norm'}

    Returns
    -------
    numpy.ndarray, shape (steps, d), float64
        What ``latentlab interpolate --z1 --z2 --out`` writes.
    """
    return _ll.interpolate(_array(z1, "--z1", 1), _array(z2, "--z2", 1), int(steps), method)


def shell_stats(dims: Sequence[int]) -> list:
    """The norm of a standard normal code per dimension: mean, std, 5 % and
    95 % quantiles and log10 of the mass within radius 1 (the rows of
    ``latentlab geometry shell --json``)."""
    return json.loads(_ll.shell_stats([int(d) for d in dims]))


# ---------------------------------------------------------------- diagnostics


def diagnose(
    mu: Any,
    logvar: Any,
    *,
    samples: int = 2000,
    probes: int = 2000,
    hole_ratio: float = 0.01,
    seed: int = 0,
) -> dict:
    """The health of a latent space: ``diagnose(mu, logvar)`` from posterior
    means and log-variances, or ``diagnose(model, x)`` from a model and its
    inputs.

    Parameters
    ----------
    mu, logvar : array_like, shape (N, d)
        Or a model and inputs (N × input_shape).
    samples : int
        Monte Carlo samples of the aggregate estimates.
    probes : int
        Prior draws probed for holes.
    hole_ratio : float
        q(z)/p(z) below which a prior draw is in a hole.
    seed : int

    Returns
    -------
    dict
        The keys and values of ``latentlab diagnose --json``: mean KL,
        active dimensions, aggregate KL, I(x; z), holes, the page's
        diagnosis and a ``verdict``.
    """
    if isinstance(mu, Model) or callable(getattr(mu, "encode", None)):
        m = _model(mu)
        a = _array(logvar, "x")
        return json.loads(
            _ll.diagnose_model(
                m._handle(a.shape[1:]), _rows(a, "x"), int(samples), int(probes), float(hole_ratio), int(seed)
            )
        )
    return json.loads(
        _ll.diagnose(
            _array(mu, "--mu", 2),
            _array(logvar, "--logvar", 2),
            int(samples),
            int(probes),
            float(hole_ratio),
            int(seed),
        )
    )


def holes(
    model: Any,
    x: Any,
    *,
    probes: int = 2000,
    hole_ratio: float = 0.01,
    seed: int = 0,
) -> dict:
    """Prior regions the aggregate posterior of `model` on inputs `x` leaves
    empty: ``fraction`` (share of prior draws in holes), ``fraction_null``
    (the same share by chance), ``emptiest`` codes and every probe's
    ``log_ratio``."""
    m = _model(model)
    a = _array(x, "x")
    return json.loads(
        _ll.holes(m._handle(a.shape[1:]), _rows(a, "x"), int(probes), float(hole_ratio), int(seed))
    )


# ---------------------------------------------------------------- maps


def embed(
    x: Any,
    method: str = "pca",
    *,
    perplexity: float = 30.0,
    iterations: int = 750,
    tsne_method: str = "auto",
    neighbors: int = 15,
    device: str = "cpu",
    seed: int = 0,
    progress: Optional[Callable[[str, int, int], None]] = None,
    return_ratio: bool = False,
    return_info: bool = False,
) -> Any:
    """A 2-D map of `x` (N × d), as ``latentlab embed`` draws it.

    Parameters
    ----------
    x : array_like, shape (N, d)
    method : {'pca', 'tsne', 'umap'}
    perplexity, iterations, tsne_method : t-SNE's settings
        ``tsne_method`` is 'auto', 'exact', 'barnes-hut' or 'fft'.
    neighbors : int
        UMAP's neighbourhood size.
    device : {'cpu', 'gpu', 'auto'}
        Where the neighbours are found.
    seed : int
    progress : callable, optional
        ``progress(phase, i, total)`` as each phase ('neighbours',
        'affinities', 'initialisation', 'optimisation'; 'pca') starts,
        advances and ends.
    return_ratio : bool
        Also return PCA's explained variance ratios (None for the others).
    return_info : bool
        Also return a dict of how the map was made: ``neighbours`` ('exact',
        'exact-gpu' or 'approximate'), ``neighbour_recall`` (1 when exact,
        else estimated against exact k-NN on 1,000 points) and
        ``phase_seconds``, as ``latentlab embed --json`` prints them.

    Returns
    -------
    numpy.ndarray, shape (N, 2), float64
        With `return_ratio`, ``(y, ratios)``; with `return_info`, the dict
        last.
    """
    y, ratio, info = _ll.embed(
        _array(x, "--latents", 2),
        str(method),
        float(perplexity),
        int(iterations),
        str(tsne_method),
        int(neighbors),
        str(device),
        int(seed),
        progress,
    )
    out = (y, ratio) if return_ratio else (y,)
    if return_info:
        out = out + (json.loads(info),)
    return out if len(out) > 1 else y


def trustworthiness(x: Any, y: Any, k: int = 10) -> float:
    """How far the `k` nearest neighbours of each point in the map `y` are
    neighbours in `x` too (1: all of them; scikit-learn's definition)."""
    return _ll.trustworthiness(_array(x, "x", 2), _array(y, "y", 2), int(k))


# ---------------------------------------------------------------- disentanglement


def disentanglement(
    codes_or_model: Any,
    factors_or_data: Any,
    factors: Any = None,
    *,
    test_codes: Any = None,
    test_factors: Any = None,
    continuous: bool = False,
    sap: Optional[str] = None,
    names: Optional[Sequence[str]] = None,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    code: str = "mean",
    seed: int = 0,
) -> dict:
    """Disentanglement metrics, on codes or on a model.

    ``disentanglement(codes, factors)`` scores codes (N × d) against their
    factors (N × K) as ``latentlab disentanglement --codes --factors``:
    MIG, SAP, DCI, modularity and explicitness, on held-out
    ``test_codes``/``test_factors`` when given.

    ``disentanglement(model, (x, factors))`` or ``disentanglement(model, x,
    factors)`` scores a model on inputs whose factor classes are known with
    every metric of ``latentlab disentanglement`` (beta-VAE, FactorVAE, MIG,
    SAP, DCI, modularity, explicitness), drawing ``num_train`` training and
    ``num_eval`` evaluation points.

    Parameters
    ----------
    continuous : bool
        The factors are real values, not classes (codes only).
    sap : {'classifier', 'correlation'}, optional
    names : sequence of str, optional
        The factors' names (model only).
    code : {'mean', 'sample'}
        The representation of an input (model only).

    Returns
    -------
    dict
        The document ``--json`` prints.
    """
    is_codes = not isinstance(codes_or_model, Model) and (
        isinstance(codes_or_model, np.ndarray) or hasattr(codes_or_model, "__array__")
    ) and not callable(getattr(codes_or_model, "encode", None))
    if is_codes:
        if factors is not None:
            raise TypeError("with codes, give disentanglement(codes, factors)")
        tc = None if test_codes is None else _array(test_codes, "--test-codes", 2)
        tf = None if test_factors is None else _array(test_factors, "--test-factors", 2)
        return json.loads(
            _ll.disentanglement_codes(
                _array(codes_or_model, "--codes", 2),
                _array(factors_or_data, "--factors", 2),
                tc,
                tf,
                bool(continuous),
                sap,
                int(seed),
            )
        )
    m = _model(codes_or_model)
    if factors is None:
        if isinstance(factors_or_data, (tuple, list)) and len(factors_or_data) == 2:
            x, factors = factors_or_data
        else:
            raise TypeError(
                "with a model, give disentanglement(model, (x, factors)) or (model, x, factors)"
            )
    else:
        x = factors_or_data
    a = _array(x, "x")
    return json.loads(
        _ll.disentanglement_model(
            m._handle(a.shape[1:]),
            _rows(a, "x"),
            _classes(factors, "factors", a.shape[0]),
            None if names is None else [str(n) for n in names],
            int(num_train),
            int(num_eval),
            sap,
            str(code),
            int(seed),
        )
    )


# ---------------------------------------------------------------- manipulation


def attribute_vector(positive: Any, negative: Any, name: str = "attribute") -> np.ndarray:
    """The unit direction mean(`positive`) − mean(`negative`) of two sets of
    codes (each N × d), as ``latentlab attribute`` finds it."""
    return _ll.attribute_vector(_array(positive, "positive", 2), _array(negative, "negative", 2), name)


def analogy(a: Any, b: Any, c: Any) -> np.ndarray:
    """The code completing "A is to B as C is to ?": mean(b) − mean(a) +
    mean(c), for codes a, b, c (each N × d, or one code of d)."""

    def two(z: Any, name: str) -> np.ndarray:
        z = _array(z, name)
        return z[None, :] if z.ndim == 1 else z

    return _ll.analogy(two(a, "A"), two(b, "B"), two(c, "C"))


def traverse(
    model: Any,
    z: Any,
    dim: Optional[int] = None,
    *,
    lo: float = -3.0,
    hi: float = 3.0,
    steps: int = 9,
) -> np.ndarray:
    """One latent dimension of the code `z` swept over ``lo..=hi`` and
    decoded: ``steps`` images, or with ``dim=None`` every dimension in turn
    (``d · steps`` images, dimension by dimension).

    The model must know its input shape (a callback model learns it from the
    data it first encodes, or from ``input_shape=``).
    """
    m = _model(model)
    if m._native is None and m.input_shape is None:
        raise ValueError("the model's input shape is not known yet; give input_shape=")
    zz = _array(z, "z", 1)
    out = _ll.traverse(m._handle(m.input_shape), zz, dim, float(lo), float(hi), int(steps))
    return out.reshape((out.shape[0],) + tuple(m.input_shape))


def geodesic(
    model: Any,
    z0: Any,
    z1: Any,
    *,
    segments: int = 16,
    iterations: int = 60,
    fd_step: float = 1e-2,
) -> Tuple[np.ndarray, dict]:
    """The shortest path from `z0` to `z1` under the decoder's pull-back
    metric, by descent on the discrete path energy.

    Returns
    -------
    path : numpy.ndarray, shape (segments + 1, d)
    stats : dict
        ``energy``, ``linear_energy``, ``slerp_energy``, ``accepted_steps``.
    """
    m = _model(model)
    if m._native is None and m.input_shape is None:
        raise ValueError("the model's input shape is not known yet; give input_shape=")
    path, stats = _ll.geodesic(
        m._handle(m.input_shape),
        _array(z0, "z0", 1),
        _array(z1, "z1", 1),
        int(segments),
        int(iterations),
        float(fd_step),
    )
    return path, json.loads(stats)


# ---------------------------------------------------------------- report


def report(
    model: Any,
    data: Any,
    labels: Any = None,
    out: Union[str, os.PathLike] = "report",
    *,
    map_points: int = 10000,
    seed: int = 0,
    title: Optional[str] = None,
    description: Optional[str] = None,
) -> str:
    """Writes ``latentlab report``'s self-contained page of `model` on the
    test images `data` into the folder `out` (``index.html`` and
    ``report.json``).

    Parameters
    ----------
    model : Model, path, or object with encode/decode
    data : array_like, shape (N, C, H, W), (N, H, W) or (N, D), values in [0, 1]
    labels : array_like of int, shape (N,), optional
        Colours the maps and scores their k-NN accuracy.
    out : path
    map_points : int
        Test points in the maps (at least 50).
    seed : int

    Returns
    -------
    str
        The path of ``index.html``.
    """
    m = _model(model)
    a = _array(data, "--data")
    if a.ndim < 2:
        raise ValueError(f"--data: expected N images, got shape {a.shape}")
    handle = m._handle(a.shape[1:])
    c, h, w = _image_shape(m.input_shape if m.input_shape else a.shape[1:])
    lab = None
    if labels is not None:
        la = np.asarray(labels.detach().cpu().numpy() if hasattr(labels, "detach") else labels)
        if la.ndim != 1 or la.dtype.kind not in "iu":
            raise ValueError(f"--labels: expected N integer labels, got {la.dtype} of shape {la.shape}")
        lab = [int(v) for v in la]
    t = title or f"latentlab report: {m!r}"
    d = description or (
        f"{m!r} on {a.shape[0]} test images, seed {seed}. Written by latentlab {__version__} from Python."
    )
    return _ll.report(
        handle, _rows(a, "--data"), c, h, w, lab, os.fspath(out), int(map_points), int(seed), t, d
    )


# ---------------------------------------------------------------- data


def load_data(spec: str = "mnist-10k", split: str = "test", *, seed: int = 0) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """The images `--data SPEC` names, as the command line splits them.

    Parameters
    ----------
    spec : str
        ``'mnist-10k'`` (compiled in), ``'dsprites:N'``, ``'color-dsprites:N'``,
        ``'FILE.npz[:N]'``, a .npy file of images, or a folder of images.
    split : {'test', 'train', 'all'}
    seed : int
        The seed of the train/test split, where the data has none of its own.

    Returns
    -------
    images : numpy.ndarray, shape (N, C, H, W), float32 in [0, 1]
    labels : numpy.ndarray of int64, shape (N,), or None
        For data with ground-truth factors (dSprites), the factor classes
        (N × K) instead.
    """
    images, labels, factors, chw = _ll.load_data(os.fspath(spec), str(split), int(seed))
    images = images.reshape((images.shape[0],) + tuple(chw))
    if factors is not None:
        return images, factors
    return images, None if labels is None else np.asarray(labels, np.int64)


# ---------------------------------------------------------------- training


def _flag(key: str, value: Any) -> list:
    name = "--" + key.replace("_", "-")
    if value is None or value is False:
        return []
    if value is True:
        return [name]
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    return [name, str(value)]


def train(
    data: Any,
    *,
    arch: Optional[str] = None,
    objective: Optional[str] = None,
    epochs: Optional[int] = None,
    out: Optional[Union[str, os.PathLike]] = None,
    progress: Union[bool, Callable[[dict], None]] = True,
    **flags: Any,
) -> Model:
    """Trains a model with ``latentlab train``'s code and returns it.

    Parameters
    ----------
    data : str or array_like
        A data name the command line takes (``'mnist-10k'``,
        ``'dsprites:2000'``, a .npy or image folder), or images
        (N × C × H × W, N × H × W or N × D, values in [0, 1]).
    arch : str, optional
        ``--arch``: ``'mlp'``, ``'conv64'``, a layer list, or a JSON file.
    objective : str, optional
        ``--objective``: elbo, beta-tcvae, factorvae, dip-vae-i, dip-vae-ii,
        info-vae, iwae, ...
    epochs : int, optional
    out : path, optional
        Where the checkpoint (and its ``.resume`` state) is written; a
        temporary folder by default.
    progress : bool or callable
        True prints one line per epoch; a callable receives each epoch's
        figures as a dict; raising in it (or Ctrl-C) stops the run with its
        state saved.
    **flags
        Any other ``latentlab train`` flag, with ``_`` for ``-``:
        ``latent=10, beta=4.0, kl_schedule='linear:2', batch=128, seed=0``.

    Returns
    -------
    Model
        The trained model: ``encode``, ``decode``, ``save``.
    """
    with tempfile.TemporaryDirectory(prefix="latentlab-") as tmp:
        if isinstance(data, (str, os.PathLike)):
            spec = os.fspath(data)
        else:
            a = _array(data, "--data")
            if a.ndim < 2:
                raise ValueError(f"--data: expected N images, got shape {a.shape}")
            spec = os.path.join(tmp, "data.npy")
            np.save(spec, np.ascontiguousarray(a, np.float32))
        ckpt = os.fspath(out) if out is not None else os.path.join(tmp, "model.safetensors")
        argv = ["--data", spec, "--out", ckpt]
        for key, value in (("arch", arch), ("objective", objective), ("epochs", epochs)):
            argv += _flag(key, value)
        for key, value in flags.items():
            argv += _flag(key, value)

        def on_epoch(doc: str) -> None:
            e = json.loads(doc)
            if callable(progress):
                progress(e)
            elif progress:
                print(
                    "epoch {epoch}: train -ELBO {neg_elbo:.3f} (rec {rec:.3f}, KL {kl:.3f})".format(
                        epoch=e.get("epoch"),
                        neg_elbo=e.get("train_neg_elbo", float("nan")),
                        rec=e.get("train_rec", float("nan")),
                        kl=e.get("train_kl", float("nan")),
                    ),
                    flush=True,
                )

        summary = json.loads(_ll.train(argv, on_epoch))
        model = Model.load(ckpt)
        model.history = summary.get("history", [])
        model.summary = summary
        return model
