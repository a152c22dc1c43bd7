"""One exception hierarchy per package: every exception class `drivers` defines derives from
`DriverError`, every one `postprocessing` defines from `PostProcessingError`, and the node's channel
timeout is the post-processing layer's timeout too."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from drivers.errors import DriverError
from postprocessing.errors import ChannelTimeout, PostProcessingError, ProtocolError, VerificationFailed

ROOTS = {"drivers": DriverError, "postprocessing": PostProcessingError}


def _exception_classes(package: str) -> list[type[BaseException]]:
    found = []
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # a backend whose vendor library is not installed here
            continue
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == info.name:
                found.append(obj)
    return found


@pytest.mark.parametrize("package", sorted(ROOTS))
def test_every_exception_a_package_defines_derives_from_its_base(package: str) -> None:
    classes = _exception_classes(package)
    assert classes, f"no exception classes found in {package}"
    outside = sorted(f"{c.__module__}.{c.__qualname__}" for c in classes if not issubclass(c, ROOTS[package]))
    assert not outside, f"outside {ROOTS[package].__name__}: {outside}"


def test_the_channel_timeout_is_one_class_every_layer_catches() -> None:
    from node.classical.errors import ChannelTimeout as ClassicalTimeout
    from node.classical.errors import ClassicalChannelError
    from postprocessing.cascade.channel import ChannelTimeout as CascadeTimeout

    assert CascadeTimeout is ChannelTimeout
    assert issubclass(ClassicalTimeout, ChannelTimeout) and issubclass(ClassicalTimeout, ClassicalChannelError)
    assert issubclass(VerificationFailed, ProtocolError)  # a failed verification aborts the block like one
