"""The package's layout: every module has a layer, imports point only down (or within a layer),
no modules import each other in a circle (but the Tensor and its ops), and the README's layout
table matches the tree.

Layers: 0 the engine; 1 functions, kernels and the shared helpers; 2 the model and the gradient
checks; 3 data, training, study and figures; 4 the command line. Every ``import`` and
``from ... import`` statement of every module counts, including those inside functions.
"""
import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "minivae"

# Each module takes the layer of the longest prefix of its dotted name listed here.
LAYERS = {
    "minivae.engine": 0,
    "minivae.functions": 1, "minivae.kernels": 1, "minivae.checks": 1, "minivae.files": 1,
    "minivae": 2,  # the package's __init__: the engine and the model, nothing above (the rest loads lazily)
    "minivae.nn": 2, "minivae.distributions": 2, "minivae.vae": 2, "minivae.optim": 2, "minivae.gradcheck": 2,
    "minivae.testing": 2, "minivae.capture": 2,
    "minivae.data": 3, "minivae.figures": 3, "minivae.training": 3, "minivae.study": 3,
    "minivae.cli": 4, "minivae.__main__": 4,
}
APPLICATION = 3  # from this layer up, each folder is one unit, and the units too must not import in a circle


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer(name: str) -> int:
    prefixes = [p for p in LAYERS if name == p or name.startswith(p + ".")]
    if not prefixes:
        raise KeyError(f"{name} has no layer: add it to LAYERS in tests/test_layout.py and to the README's table")
    return LAYERS[max(prefixes, key=len)]


def unit(name: str) -> str:
    """The folder or file a module belongs to: minivae.training.loop -> minivae.training."""
    return ".".join(name.split(".")[:2])


def imports_of(name: str) -> set:
    """The minivae modules that module ``name`` imports, resolved to the deepest module that exists."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target.split(".")[0] == "minivae" and target != name:
                found.add(target)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def cycles(graph: dict) -> list:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer():
    assert [name for name in MODULES if not any(name == p or name.startswith(p + ".") for p in LAYERS)] == []


def test_imports_point_down_or_within_a_layer():
    upward = [f"{name} (layer {layer(name)}) imports {target} (layer {layer(target)})"
              for name, targets in GRAPH.items() for target in sorted(targets) if layer(target) > layer(name)]
    assert upward == []


# Tensor's operators and methods are the ops (tensor.py imports ops.py at its end) and the ops make
# Tensors: one type written in two files, the only pair allowed to import each other.
ONE_TYPE_IN_TWO_FILES = ["minivae.engine.ops", "minivae.engine.tensor"]


def test_no_modules_import_each_other_in_a_circle():
    assert cycles(GRAPH) == [ONE_TYPE_IN_TWO_FILES]


def test_no_application_folders_import_each_other_in_a_circle():
    units = {}
    for name, targets in GRAPH.items():
        if layer(name) >= APPLICATION:
            units.setdefault(unit(name), set()).update(
                unit(t) for t in targets if layer(t) >= APPLICATION and unit(t) != unit(name))
    assert cycles(units) == []


def test_the_checks_find_an_upward_import_and_a_circle():
    """The walk itself: a model module importing the command line, and two modules importing each
    other, are both reported."""
    graph = {**GRAPH, "minivae.nn": GRAPH["minivae.nn"] | {"minivae.cli.command"}}
    assert any(layer(t) > layer(n) for n, ts in graph.items() for t in ts)
    graph["minivae.cli.command"] = GRAPH["minivae.cli.command"] | {"minivae.nn"}
    assert any({"minivae.cli.command", "minivae.nn"} <= set(component) for component in cycles(graph))
    assert "minivae.training.checkpoint" in GRAPH["minivae.training.loop"]  # relative imports resolve
    assert "minivae.kernels" in GRAPH["minivae.training.progress"]          # and so do imports inside functions


def test_importing_minivae_loads_no_application_module():
    probe = ("import sys, minivae\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'minivae' and m.count('.') >= 1 "
             "and m.split('.')[1] in ('data', 'training', 'study', 'figures', 'cli', 'files')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------- the README
def layout_rows() -> list:
    """(layer, [paths]) for each row of the table in the README's "Layout" section.

    A row names a folder (``minivae/training/``) and then, after it, the files in it by name
    (``loop.py``), or names files by their full path (``minivae/nn.py``).
    """
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or not cells[0].isdigit():
            continue
        paths, folder = [], None
        for token in re.findall(r"`([^`]+)`", " | ".join(cells[1:])):
            if token.startswith("minivae/"):
                paths.append(token)
                folder = token if token.endswith("/") else folder
            elif token.endswith(".py") and "/" not in token:
                assert folder is not None, f"README layout: {token} comes before any folder in its row"
                paths.append(folder + token)
        rows.append((int(cells[0]), paths))
    return rows


def test_the_readme_layout_table_lists_every_module_and_only_paths_that_exist():
    rows = layout_rows()
    assert rows, "the README has no layout table"
    listed = {path for _, paths in rows for path in paths}
    assert sorted(p for p in listed if not (ROOT / p).exists()) == []
    files = {str(path.relative_to(ROOT)) for path in PACKAGE.rglob("*.py")}
    assert sorted(files - listed) == []


def test_the_readme_layout_table_gives_each_path_its_layer():
    wrong = []
    for row_layer, paths in layout_rows():
        for path in paths:
            name = module_name(ROOT / path) if path.endswith(".py") else path.rstrip("/").replace("/", ".")
            if layer(name) != row_layer:
                wrong.append(f"{path}: the table says layer {row_layer}, the imports' check {layer(name)}")
    assert wrong == []

