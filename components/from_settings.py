"""Component functions written from a settings class: one input per setting, so that the
component's signature cannot drift from the runtime's configuration.

KFP ships a lightweight component as the source text of its function, and the pod's executor
reads the inputs off that function's signature. So the function is generated as source, one
typed parameter per setting plus the component's own (artifacts), and registered with
``linecache`` so that ``inspect.getsource`` (which KFP calls) finds it. Its body hands every
input, by name, to one runtime function::

    def client(server: str, client_id: int, num_clients: int, ...):
        values = dict(locals())
        from client_component.run import run_client_task
        run_client_task(values)
"""

from __future__ import annotations

import linecache
from collections.abc import Callable, Sequence

from kfp import dsl

from contract.settings import settings_of

_TYPE_NAMES = {int: "int", float: "float", str: "str", bool: "bool"}


def settings_function(name: str, settings: type, runs: str, *, doc: str,
                      extra: Sequence[str] = ()) -> Callable:
    """A function ``name`` taking one input per setting of ``settings`` and then the
    ``extra`` parameters (source text such as ``"report: Output[HTML]"``) that calls
    ``runs`` (``"package.module:function"``) with all of them by name."""
    module, function = runs.split(":")
    parameters = [f"{s.name}: {_TYPE_NAMES[s.type]}" for s in settings_of(settings)
                  if s.spec.task_input]
    source = "\n".join([
        f"def {name}(",
        *(f"    {p}," for p in [*parameters, *extra]),
        "):",
        f'    """{doc}"""',
        "    values = dict(locals())",
        f"    from {module} import {function}",
        f"    {function}(values)",
        "",
    ])
    filename = f"<fl-on-kubeflow component {name}>"
    namespace = dict(vars(dsl))  # Output, Model, Metrics, ...: what the executor imports too
    exec(compile(source, filename, "exec", dont_inherit=True), namespace)  # our own source
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    generated = namespace[name]
    generated.__module__ = __name__
    return generated
