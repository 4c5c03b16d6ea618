"""The per-instance hook registry: install, chain, remove, and refuse to clobber foreign wrappers."""

import pytest
import torch

from hasten.diffusion.hooks import HookRegistry


class Doubler(torch.nn.Module):
    def forward(self, x):
        return 2 * x


def add(amount):
    def wrapper(call_next, x):
        return call_next(x) + amount

    return wrapper


def test_a_hook_wraps_only_that_instance_and_removal_restores_it():
    hooked, other = Doubler(), Doubler()
    HookRegistry.of(hooked).add("plus1", None, {"forward": add(1)})
    x = torch.ones(2)
    assert hooked(x).tolist() == [3.0, 3.0]
    assert other(x).tolist() == [2.0, 2.0]
    assert "forward" not in vars(other) and Doubler.forward.__qualname__ == "Doubler.forward"
    HookRegistry.find(hooked).remove("plus1")
    assert "forward" not in vars(hooked)
    assert hooked.forward.__func__ is Doubler.forward
    assert HookRegistry.find(hooked) is None


def test_hooks_chain_newest_outermost_and_remove_in_any_order():
    module = Doubler()
    registry = HookRegistry.of(module)
    registry.add("plus1", None, {"forward": add(1)})
    registry.add("times10", None, {"forward": lambda call_next, x: 10 * call_next(x)})
    assert module(torch.ones(1)).item() == 30.0  # 10 * (2 + 1)
    assert registry.names() == ("plus1", "times10")
    registry.remove("plus1")
    assert module(torch.ones(1)).item() == 20.0
    registry.remove("times10")
    assert "forward" not in vars(module)


def test_duplicate_names_and_missing_methods_raise():
    module = Doubler()
    registry = HookRegistry.of(module)
    registry.add("a", None, {"forward": add(1)})
    with pytest.raises(ValueError, match="already installed"):
        registry.add("a", None, {"forward": add(1)})
    with pytest.raises(ValueError, match="no method"):
        registry.add("b", None, {"cache_context": add(1)})
    with pytest.raises(KeyError):
        registry.remove("missing")


def test_a_preexisting_instance_forward_is_kept_and_restored():
    module = Doubler()
    foreign = lambda x: 5 * x  # noqa: E731 - another library's instance-level wrapper
    module.forward = foreign
    HookRegistry.of(module).add("plus1", None, {"forward": add(1)})
    assert module(torch.ones(1)).item() == 6.0
    HookRegistry.find(module).remove("plus1")
    assert module.forward is foreign


def test_removal_refuses_when_a_later_wrapper_replaced_the_method():
    module = Doubler()
    registry = HookRegistry.of(module)
    registry.add("plus1", None, {"forward": add(1)})
    ours = module.forward
    module.forward = lambda x: ours(x) * 100  # a later library wraps ours
    with pytest.raises(RuntimeError, match="replaced after hasten"):
        registry.remove("plus1")
    assert registry.names() == ("plus1",)
    assert module(torch.ones(1)).item() == 300.0


def test_owner_is_returned():
    module = Doubler()
    owner = object()
    HookRegistry.of(module).add("x", owner, {"forward": add(0)})
    assert HookRegistry.find(module).owner("x") is owner
    assert HookRegistry.find(module).owner("y") is None
