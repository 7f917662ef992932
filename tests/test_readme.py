"""The README's python blocks run as written, in order, in one namespace."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def test_every_python_block_of_the_readme_runs():
    blocks = PYTHON_BLOCK.findall(README.read_text())
    assert len(blocks) >= 3
    namespace = {"__name__": "readme"}
    for number, block in enumerate(blocks, start=1):
        exec(compile(block, f"README.md, python block {number}", "exec"), namespace)
    # the engine tour's figures are what the README says they are
    assert abs(namespace["d3"](namespace["np"].array(0.5)).item() - (-0.5652092882597705)) < 1e-12
    assert namespace["h"].grad.shape == (128, 400)
