"""tests/schedule.py: the order xdist's test processes run the suite in."""

from __future__ import annotations

from tests.schedule import long_first, shares


def test_shares_are_worksteals_first_handout():
    assert shares(10, 2) == [5, 5] and shares(11, 2) == [5, 6] and shares(10, 3) == [3, 3, 4] and shares(3, 1) == [3]


def test_each_process_opens_its_share_with_the_long_modules_dealt_to_it():
    ids = [f"a.py::t{i}" for i in range(6)] + ["long1.py::x", "long1.py::y", "long2.py::z", "long3.py::w"]
    ids += [f"b.py::t{i}" for i in range(4)]
    long = {"long1.py": 30, "long2.py": 20, "long3.py": 15}
    order = [ids[i] for i in long_first(ids, 2, long)]
    assert sorted(order) == sorted(ids)  # every test, once
    first, second = order[:7], order[7:]  # worksteal's shares of 14 tests: 7 and 7
    # long1 (30 s) to the first process; long2 (20 s) to the second; long3 (15 s) to the second (20 < 30)
    assert first[:2] == ["long1.py::x", "long1.py::y"]
    assert second[:2] == ["long2.py::z", "long3.py::w"]
    rest = [t for t in order if not t.startswith("long")]
    assert rest == [t for t in ids if not t.startswith("long")]  # the others in collection order


def test_without_long_modules_the_order_is_the_collections():
    ids = [f"m{i // 3}.py::t{i}" for i in range(9)]
    assert long_first(ids, 2, {}) == list(range(9))
