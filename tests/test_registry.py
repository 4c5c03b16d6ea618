"""Registry: built-in modules given as ``"package.*"`` are discovered, not listed."""

from __future__ import annotations

import sys

from hasten.registry import Registry


def test_package_star_imports_every_public_submodule_on_first_read(tmp_path, monkeypatch):
    pkg = tmp_path / "hasten_test_methods_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from hasten.registry import Registry\nREG = Registry('widget', ('hasten_test_methods_pkg.*',))\n"
    )
    for name in ("alpha", "beta"):
        (pkg / f"{name}.py").write_text(f"from . import REG\nREG.register({name!r}, {name!r})\n")
    (pkg / "_helper.py").write_text("raise AssertionError('a private module was imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import hasten_test_methods_pkg as package

        assert "hasten_test_methods_pkg.alpha" not in sys.modules  # lazy: nothing imported yet
        assert package.REG.names() == ("alpha", "beta")
        assert "hasten_test_methods_pkg._helper" not in sys.modules
    finally:
        for name in [m for m in sys.modules if m.startswith("hasten_test_methods_pkg")]:
            del sys.modules[name]


def test_listed_modules_still_work():
    reg: Registry[int] = Registry("widget", ("json",))
    reg.register("x", 1)
    assert reg.names() == ("x",)
