"""The package's modules import each other without a circle, lazily or not: every `import` of a fastnet module
anywhere in a module (at its top or inside a function) is an edge, and the graph of edges has no cycle. A module
that needs one that needs it back takes what it needs another way (fastnet._registry for the model classes)."""
import ast
import os

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
COMPILED = {"fastnet._kernels"}  # Cython; it imports no fastnet module


def modules():
    found = {}
    for folder, _, files in os.walk(os.path.join(ROOT, "fastnet")):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                found[name[:-len(".__init__")] if name.endswith(".__init__") else name] = path
    return found


def import_graph():
    """{module: the fastnet modules it imports}: `from fastnet.x import name` is an edge to fastnet.x.name where
    that is a module, else to fastnet.x; a package's attribute (fastnet.__version__) is an edge to the package."""
    mods = modules()
    edges = {}
    for mod, path in mods.items():
        package = mod if path.endswith("__init__.py") else mod.rsplit(".", 1)[0]
        targets = set()
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.split(".")[0] == "fastnet"}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                if base.split(".")[0] == "fastnet":
                    targets |= {f"{base}.{a.name}" if f"{base}.{a.name}" in mods | dict.fromkeys(COMPILED) else base
                                for a in node.names}
        edges[mod] = {t for t in targets if t in mods and t != mod}
    return edges


def cycle(edges):
    """A cycle of the graph, as a list of modules, or None."""
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == "open":
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        state[m] = "done"
        stack.pop()
        return None

    for m in sorted(edges):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_no_module_imports_one_that_imports_it_back():
    edges = import_graph()
    assert "fastnet.models" in edges and "fastnet.saving" in edges["fastnet.models"]
    found = cycle(edges)
    assert found is None, "circular imports: " + " -> ".join(found)


def test_the_check_finds_a_circle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None
