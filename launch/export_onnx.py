"""``mtm-export-onnx`` from a checkout: the command is :mod:`mtm_robot.cli.export_onnx`."""

from mtm_robot.cli import export_onnx

if __name__ == "__main__":
    export_onnx.entry()
