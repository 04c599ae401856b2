"""The app table of an ncnn graph (export.ncnn_apps) is derived from the graph: a layer or a
parameter an app does not know changes its row."""

from __future__ import annotations

from msn_deploy.export.ncnn_apps import app_table, known_apps, what_stops
from msn_deploy.export.to_ncnn import main as to_ncnn_main
from msn_deploy.msn.formats.ncnn_param import MAGIC, Layer, NcnnParam


def rows(graph: NcnnParam) -> dict[str, tuple[str, str]]:
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in app_table(graph)[2:]]
    return {app: (loads, stops) for app, loads, stops in cells}


def plain_graph(*extra: Layer) -> NcnnParam:
    """A graph every ncnn build knows (input, convolution, pixel shuffle), with `extra` after it."""
    layers = [Layer("Input", "in", [], ["data"], ["0=0", "1=0", "2=3"]),
              Layer("Convolution", "conv", ["data"], ["c"], ["0=48", "1=3", "4=1", "5=1", "6=1296"]),
              Layer("PixelShuffle", "up", ["c"], ["p"], ["0=4"])]
    for layer in extra:
        layer.bottoms = [layers[-1].tops[0]]
        layers.append(layer)
    return NcnnParam.parse("\n".join([MAGIC, f"{len(layers)} {len(layers)}", *(layer.line() for layer in layers)]))


def test_a_planted_layer_changes_the_table():
    plain = rows(plain_graph(Layer("Sigmoid", "s", [], ["output"])))
    assert plain["chaiNNer"] == ("yes", "-") and plain["upscayl-ncnn (current source)"] == ("yes", "-")
    assert plain["Video2X 6"] == ("no", "loads only its own models")
    with_erf = rows(plain_graph(Layer("Erf", "e", [], ["output"])))
    assert with_erf["chaiNNer"] == ("no", "Erf (1)") and with_erf["ncnn (current, PyPI)"] == ("yes", "-")
    with_unary = rows(plain_graph(Layer("UnaryOp", "u", [], ["output"], ["0=5"])))
    assert with_unary["chaiNNer"] == ("yes", "-") and with_unary["upscayl-ncnn (current source)"] == ("no", "UnaryOp (1)")
    sized_interp = rows(plain_graph(Layer("Interp", "i", [], ["output"], ["0=3", "9=1w,1h"])))
    assert sized_interp["chaiNNer"] == ("no", "Interp param 9 (1)")


def test_chainners_reading_of_scale_and_channels():
    chainner = next(app for app in known_apps() if app.name == "chaiNNer")
    strided = plain_graph(Layer("Convolution", "down", [], ["output"], ["0=3", "1=3", "3=2", "6=1296"]))
    assert what_stops(chainner, strided) == []  # x4 / 2 = x2: a scale it takes
    for _ in range(2):
        strided.layers.insert(2, Layer("Convolution", "s", ["c"], ["c"], ["0=48", "1=1", "3=2", "6=2304"]))
    assert what_stops(chainner, strided) == ["scale read as 0.5 (strided convolutions)"]
    depthwise_first = plain_graph(Layer("Sigmoid", "s", [], ["output"]))
    depthwise_first.layers.insert(1, Layer("ConvolutionDepthWise", "dw", ["data"], ["data"], ["0=3", "1=1", "6=3", "7=3"]))
    assert what_stops(chainner, depthwise_first) == ["input channels read as 1, not 3 (first convolution)"]
    upscayl = next(app for app in known_apps() if app.name.startswith("upscayl-ncnn"))
    assert what_stops(upscayl, strided) == []  # upscayl takes the scale from its command line


def test_array_parameters_are_read_by_their_id():
    chainner = next(app for app in known_apps() if app.name == "chaiNNer")
    crop = plain_graph(Layer("Crop", "c", [], ["output"], ["-23309=1,1", "-23310=1,2147483647", "-23311=1,0"]))
    assert what_stops(chainner, crop) == []
    unknown = plain_graph(Layer("Crop", "c", [], ["output"], ["-23320=1,5"]))
    assert what_stops(chainner, unknown) == ["Crop param 20 (1)"]


def test_the_export_prints_the_table_of_its_graph(random_ckpt, tmp_path, capsys):
    assert to_ncnn_main(["--ckpt", str(random_ckpt), "-o", str(tmp_path / "m.param"), "--no-verify"]) == 0
    printed = rows(NcnnParam.read(tmp_path / "m.param"))
    out = capsys.readouterr().out
    assert "| app | loads this graph | what stops it |" in out and printed["ncnn (current, PyPI)"] == ("yes", "-")
    assert printed["chaiNNer"] == ("yes", "-") and printed["upscayl-ncnn (current source)"] == ("yes", "-")
    assert printed["upscayl (shipped upscayl-bin)"][0] == "no" and "Reduction (24)" in out
