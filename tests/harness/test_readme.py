"""The README's example is code users copy: it must run as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from harness.rig import World

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_example_passes() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    (example,) = [block for block in blocks if "def test_my_flow(world)" in block]
    namespace: dict[str, Any] = {}
    exec(compile(example, "README.md", "exec"), namespace)
    with World() as world:
        namespace["test_my_flow"](world)
        assert world.store.check_invariants() == []
        assert any(inv.status == "paid" and inv.payments for inv in world.store.invoices.values())
