"""PyTorch reference backend: a .pt2 from torch.export.save, an ExportedProgram or an nn.Module.

Output names: the keys when the model returns a dict, else ``output_names`` if given,
else "output" (one tensor) or "output_0", "output_1", ... (tuple/list).
Note that torch.set_num_threads, used for ``threads``, is process-wide.
"""
from __future__ import annotations

import inspect
import os

from .base import Backend, BackendError, RuntimeNotInstalled, check_file


def _import():
    try:
        import torch
    except Exception as exc:
        raise RuntimeNotInstalled("torch", "torch", "train", exc) from exc
    return torch


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, model, threads=None, device=None, output_names=None, input_names=None):
        torch = _import()
        self._torch = torch
        program = None
        if isinstance(model, (str, os.PathLike)):
            path = check_file(model, self.name, (".pt2",))
            try:
                program = torch.export.load(str(path))
            except Exception as exc:
                raise BackendError(f"torch: cannot load {str(path)!r}: {exc}") from exc
        elif isinstance(model, torch.export.ExportedProgram):
            path, program = None, model
        elif isinstance(model, torch.nn.Module):
            path = None
        else:
            raise BackendError(f"torch: expected a .pt2 path, ExportedProgram or nn.Module, "
                               f"got {type(model).__name__}")
        super().__init__(path, threads)
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        self.device = torch.device(device or "cpu")
        if program is not None:
            self.module = program.module()
            self.input_names, self.input_shapes = _program_inputs(program)
            keys = _dict_output_keys(program)
            self.output_names = list(keys or output_names or [])
        else:
            self.module = model.eval()
            params = [p for p in inspect.signature(model.forward).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            self.input_names = [p.name for p in params]
            self.input_shapes = {n: None for n in self.input_names}
            self.output_names = list(output_names or [])
        if input_names is not None:
            if len(input_names) != len(self.input_names):
                raise BackendError(f"torch: {self._where()} has {len(self.input_names)} inputs, "
                                   f"got input_names {list(input_names)}")
            self.input_shapes = dict(zip(input_names, self.input_shapes.values()))
            self.input_names = list(input_names)
        if self.device.type != "cpu":
            self.module.to(self.device)

    def _run(self, feed):
        torch = self._torch
        args = [torch.from_numpy(feed[n]).to(self.device) for n in self.input_names]
        with torch.inference_mode():
            out = self.module(*args)
        if isinstance(out, dict):
            names, values = list(out), list(out.values())
        elif isinstance(out, (tuple, list)):
            values = list(out)
            names = (self.output_names if len(self.output_names) == len(values)
                     else [f"output_{i}" for i in range(len(values))])
        else:
            values = [out]
            names = self.output_names[:1] if len(self.output_names) == 1 else ["output"]
        self.output_names = names
        return {n: v.detach().to("cpu").numpy() for n, v in zip(names, values)}


def _program_inputs(program) -> tuple[list[str], dict]:
    """User input names and static shapes (None = symbolic) of an ExportedProgram."""
    names = list(program.graph_signature.user_inputs)
    nodes = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    shapes = {}
    for n in names:
        val = nodes[n].meta.get("val") if n in nodes else None
        shape = getattr(val, "shape", None)
        shapes[n] = None if shape is None else tuple(
            d if isinstance(d, int) else None for d in shape)
    return names, shapes


def _dict_output_keys(program) -> list[str] | None:
    try:
        spec = program.call_spec.out_spec
        if spec is not None and spec.type is dict:
            return [str(k) for k in spec.context]
    except Exception:
        pass
    return None


def load(model, threads=None, device=None, output_names=None, input_names=None) -> TorchBackend:
    """Load a .pt2 (torch.export.save) or wrap an in-memory ExportedProgram / nn.Module."""
    return TorchBackend(model, threads=threads, device=device, output_names=output_names,
                        input_names=input_names)

