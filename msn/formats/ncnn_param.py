"""ncnn's text graph (`.param`): read, rewritten where MSN needs it, written.

The format: a magic line, "LAYERS BLOBS", then one layer per line: type, name, bottom count, top
count, the bottom and top blob names, then `key=value` parameters. Every blob is produced once
and consumed once (ncnn's Split layer fans a blob out).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from msn_deploy.msn.errors import UsageError

MAGIC = "7767517"
INPUT_BLOB, OUTPUT_BLOB = "data", "output"  # Real-ESRGAN-ncnn-vulkan's names, which its forks' apps load
UPSAMPLER = "msn_upsampler"  # the name msn-export-ncnn gives MSN's PixelShuffle: what marks an MSN graph
SQRT_HALF = 0.7071067811865476
# BinaryOp's op_type values (ncnn/src/layer/binaryop.h)
ADD, SUB, MUL, POW = 0, 1, 2, 6
# A layer's param 31 ("featmask", ncnn/src/net.cpp): 1 no fp16 arithmetic, 2 no fp16 storage, 16 not on
# Vulkan. Statistics get all three: with only 1|2 a Vulkan FP16 net gave NaN on lavapipe (per-layer
# FP32 storage inside a Vulkan FP16 net was not honoured), so they run in FP32 on ncnn's CPU path.
FEATMASK, FP32_ONLY = "31", 1 | 2 | 16
CONVOLUTIONS = ("Convolution", "ConvolutionDepthWise")


class NcnnParamError(UsageError):
    """A file that is not an ncnn text graph, or one cut off or edited."""


@dataclass
class Layer:
    type: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: list[str] = field(default_factory=list)  # "key=value", in ncnn's order

    def line(self) -> str:
        head = f"{self.type:<24} {self.name:<24} {len(self.bottoms)} {len(self.tops)}"
        return " ".join([head, *self.bottoms, *self.tops, *self.params])

    def param(self, key: str) -> str | None:
        return next((p.split("=", 1)[1] for p in self.params if p.split("=", 1)[0] == key), None)


@dataclass
class NcnnParam:
    layers: list[Layer]

    @classmethod
    def parse(cls, text: str, source: str = "param") -> NcnnParam:
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) < 2 or lines[0].strip() != MAGIC:
            raise NcnnParamError(f"{source} is not an ncnn text param file (it does not start with {MAGIC})")
        try:
            n_layers, n_blobs = (int(v) for v in lines[1].split())
        except ValueError:
            raise NcnnParamError(f"{source} line 2 is not 'LAYERS BLOBS': {lines[1][:80]!r}") from None
        if len(lines) - 2 != n_layers:
            raise NcnnParamError(f"{source} holds {len(lines) - 2} layers, but its header says {n_layers}: the file is "
                                "cut off or edited; export it again")
        layers = []
        for number, line in enumerate(lines[2:], start=3):
            words = line.split()
            try:
                n_bottom, n_top = int(words[2]), int(words[3])
                names = words[4 : 4 + n_bottom + n_top]
                if len(names) != n_bottom + n_top:
                    raise ValueError
            except (IndexError, ValueError):
                raise NcnnParamError(f"{source} line {number} is not an ncnn layer: {line[:80]!r}") from None
            layers.append(Layer(words[0], words[1], names[:n_bottom], names[n_bottom:],
                                words[4 + n_bottom + n_top :]))
        return cls(layers)

    @classmethod
    def read(cls, path: Path) -> NcnnParam:
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise NcnnParamError(f"cannot read {path} as an ncnn param file: {exc}") from None
        return cls.parse(text, str(path))

    def blobs(self) -> list[str]:
        return list(dict.fromkeys(blob for layer in self.layers for blob in layer.tops))

    def text(self) -> str:
        lines = [MAGIC, f"{len(self.layers)} {len(self.blobs())}", *(layer.line() for layer in self.layers)]
        return "\n".join(lines) + "\n"

    def inputs(self) -> list[str]:
        return [blob for layer in self.layers if layer.type == "Input" for blob in layer.tops]

    def outputs(self) -> list[str]:
        consumed = {blob for layer in self.layers for blob in layer.bottoms}
        return [blob for blob in self.blobs() if blob not in consumed]

    def consumers(self) -> dict[str, list[Layer]]:
        """The layers that read each blob."""
        readers: dict[str, list[Layer]] = {}
        for layer in self.layers:
            for bottom in layer.bottoms:
                readers.setdefault(bottom, []).append(layer)
        return readers

    def rename_blob(self, old: str, new: str) -> None:
        if new in self.blobs():
            raise NcnnParamError(f"blob {new!r} exists already")
        for layer in self.layers:
            layer.bottoms = [new if b == old else b for b in layer.bottoms]
            layer.tops = [new if t == old else t for t in layer.tops]
            if layer.type == "Input" and layer.name == old:
                layer.name = new

    def upscale(self) -> int | None:
        """The scale of MSN's upsampler (its PixelShuffle's parameter 0); None in a graph that has
        none, i.e. one msn-export-ncnn did not write."""
        ups = [layer for layer in self.layers if layer.type == "PixelShuffle" and layer.name == UPSAMPLER]
        return int(ups[0].param("0") or 1) if len(ups) == 1 else None

    def mark_upsampler(self) -> None:
        (shuffle,) = [layer for layer in self.layers if layer.type == "PixelShuffle"]
        shuffle.name = UPSAMPLER

    def exact_gelu(self) -> int:
        """Replace every GELU layer by 0.5 * x * (1 + erf(x / sqrt 2)); returns how many.

        ncnn's Vulkan GELU is the tanh approximation whatever its parameters (up to 4.7e-4 from
        PyTorch's erf GELU, measured), while its Erf layer is exact to 4e-7 on CPU and Vulkan alike.
        """
        rewritten: list[Layer] = []
        count = 0
        for layer in self.layers:
            if layer.type != "GELU":
                rewritten.append(layer)
                continue
            (x,), (y,) = layer.bottoms, layer.tops
            n = f"{layer.name}_erf"
            rewritten += [
                Layer("Split", f"{n}_split", [x], [f"{n}_a", f"{n}_b"]),
                Layer("BinaryOp", f"{n}_scale", [f"{n}_a"], [f"{n}_t"], [f"0={MUL}", "1=1", f"2={SQRT_HALF:.9e}"]),
                Layer("Erf", n, [f"{n}_t"], [f"{n}_e"]),
                Layer("BinaryOp", f"{n}_plus1", [f"{n}_e"], [f"{n}_p"], [f"0={ADD}", "1=1", "2=1.0"]),
                Layer("BinaryOp", f"{n}_times_x", [f"{n}_b", f"{n}_p"], [f"{n}_m"], [f"0={MUL}"]),
                Layer("BinaryOp", f"{n}_half", [f"{n}_m"], [y], [f"0={MUL}", "1=1", "2=0.5"]),
            ]
            count += 1
        self.layers = rewritten
        return count

    def fold_subsampling(self) -> int:
        """Give a stride-1 convolution followed only by a 1x1 max pooling of stride s (the apps'
        form of a strided convolution, export.ncnn_portable) stride s itself; returns how many.
        Exact: the pooling keeps every s-th output, which is what the strided convolution computes."""
        consumers = self.consumers()
        dropped = set()
        for conv in self.layers:
            users = consumers.get(conv.tops[0], []) if len(conv.tops) == 1 else []
            pool = users[0] if len(users) == 1 else None
            if conv.type not in CONVOLUTIONS or pool is None or pool.type != "Pooling" \
                    or (conv.param("3") or "1") != "1" or (conv.param("13") or "1") != "1":
                continue
            p = {key: pool.param(key) for key in ("0", "1", "11", "3", "5")}
            if p != {"0": "0", "1": "1", "11": "1", "3": "0", "5": "1"} or pool.param("4") not in (None, "0"):
                continue
            stride_w = pool.param("2") or "1"
            conv.params = [q for q in conv.params if q.split("=", 1)[0] not in ("3", "13")]
            conv.params += [f"3={stride_w}", f"13={pool.param('12') or stride_w}"]
            conv.tops = pool.tops
            dropped.add(id(pool))
        self.layers = [layer for layer in self.layers if id(layer) not in dropped]
        return len(dropped)

    def keep_statistics_fp32(self) -> int:
        """Mark MSN's statistics to run in FP32 when ncnn runs the rest in FP16; returns how many
        layers. They are the float32 islands of the FP16 ONNX graph: means over the whole image,
        squares, their averages and roots, which float16 loses on large photos (Vulkan FP16 on
        lavapipe, a bright 270x480 photo vs float64: 29.8 dB unmarked, 59.7 dB marked).

        Seeds are the reductions, roots (UnaryOp or BinaryOp powers), average pools and squares (a MUL of a Split's two
        copies); the island grows to every layer whose inputs all come from it and every layer
        whose outputs all go into it, until nothing changes."""
        producer = {top: layer for layer in self.layers for top in layer.tops}
        consumers = self.consumers()

        def square(layer: Layer) -> bool:
            if layer.type != "BinaryOp" or (layer.param("0") or "0") != str(MUL) or len(layer.bottoms) != 2:
                return False
            a, b = (producer.get(bottom) for bottom in layer.bottoms)
            return a is not None and a is b and a.type == "Split"

        def root(layer: Layer) -> bool:
            return layer.type == "UnaryOp" or (layer.type == "BinaryOp" and layer.param("0") == str(POW))

        island = {id(layer) for layer in self.layers if layer.type == "Reduction" or root(layer) or square(layer)
                  or (layer.type == "Pooling" and layer.param("0") == "1")}
        grew = True
        while grew:
            grew = False
            for layer in self.layers:
                if id(layer) in island or layer.type in ("Input", "MemoryData"):
                    continue
                inputs = [producer[b] for b in layer.bottoms if producer[b].type != "MemoryData"]
                outputs = [c for top in layer.tops for c in consumers.get(top, [])]
                if (inputs and all(id(i) in island for i in inputs)) or \
                        (outputs and all(id(o) in island for o in outputs)):
                    island.add(id(layer))
                    grew = True
        for layer in self.layers:
            if id(layer) in island:
                kept = [p for p in layer.params if not p.startswith(f"{FEATMASK}=")]
                layer.params = [*kept, f"{FEATMASK}={FP32_ONLY}"]
        return len(island)
