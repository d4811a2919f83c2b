"""Render a kustomization as `kustomize build` / `kubectl kustomize` would, for the subset
cluster/kuberay uses: `resources` (files and kustomization folders), `images` (name,
newName, newTag) and `patches` (JSON 6902 patch files with a kind/name target). Any other
field is refused, so a kustomization cannot rely on something this renderer would skip.
Neither kustomize nor kubectl installs from the package registries here; this keeps the
overlays checkable (tests/test_cluster.py validates the output against KubeRay's CRDs)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "images", "patches"}


def render(folder: Path) -> list[dict[str, Any]]:
    k = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(k) - SUPPORTED
    if unknown:
        raise ValueError(f"{folder}/kustomization.yaml: fields this renderer does not "
                         f"implement: {sorted(unknown)}")
    docs: list[dict[str, Any]] = []
    for res in k.get("resources", []):
        path = (folder / res).resolve()
        if path.is_dir():
            docs += render(path)
        else:
            # kustomize refuses files outside the kustomization's folder (load restrictor).
            if folder.resolve() not in path.parents:
                raise ValueError(f"{folder}: resource file {res} is outside the folder")
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    for patch in k.get("patches", []):
        ops = yaml.safe_load((folder / patch["path"]).read_text())
        if not isinstance(ops, list):
            raise ValueError(f"{patch['path']}: only JSON 6902 patches (a list of ops)")
        hits = [d for d in docs if _matches(d, patch.get("target", {}))]
        if not hits:
            raise ValueError(f"{patch['path']}: its target matches no resource")
        for doc in hits:
            for op in ops:
                _apply(doc, op, patch["path"])
    for image in k.get("images", []):
        for doc in docs:
            for c in _containers(doc):
                _set_image(c, image)
    return docs


def _matches(doc: dict[str, Any], target: dict[str, str]) -> bool:
    return all((doc.get("kind") if key == "kind" else doc.get("metadata", {}).get(key)) == value
               for key, value in target.items())


def _containers(doc: Any) -> list[dict[str, Any]]:
    """Every container and init container anywhere in a resource."""
    found: list[dict[str, Any]] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                found += [c for c in value if isinstance(c, dict)]
            else:
                found += _containers(value)
    elif isinstance(doc, list):
        for item in doc:
            found += _containers(item)
    return found


def _set_image(container: dict[str, Any], image: dict[str, str]) -> None:
    ref = container.get("image", "")
    name, tag = ref.rsplit(":", 1) if ":" in ref.rsplit("/", 1)[-1] else (ref, None)
    if name != image["name"]:
        return
    name = image.get("newName", name)
    tag = image.get("newTag", tag)
    container["image"] = f"{name}:{tag}" if tag else name


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise ValueError(f"JSON pointer must start with '/': {path}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _apply(doc: dict[str, Any], op: dict[str, Any], where: str) -> None:
    *parents, last = _pointer(op["path"])
    node: Any = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    kind = op["op"]
    value = copy.deepcopy(op.get("value"))
    if isinstance(node, list):
        index = len(node) if last == "-" else int(last)
        if kind == "add":
            node.insert(index, value)
        elif kind == "replace":
            node[index] = value
        elif kind == "remove":
            del node[index]
        else:
            raise ValueError(f"{where}: op {kind} not implemented")
        return
    if kind == "add":
        node[last] = value
    elif kind == "replace":
        if last not in node:
            raise ValueError(f"{where}: replace of a missing field {op['path']}")
        node[last] = value
    elif kind == "remove":
        del node[last]
    else:
        raise ValueError(f"{where}: op {kind} not implemented")
