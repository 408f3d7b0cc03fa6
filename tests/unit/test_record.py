"""Record: the immutable records the daemon declares without ``dataclasses`` (which imports ``inspect``)."""

import pytest

from keplerd.model.record import Record


class Point(Record):
    """A record with a required field, a default and a mutable default."""

    x: int
    y: int = 0
    tags: dict = {}

    def norm1(self):
        return abs(self.x) + abs(self.y)


class Point3(Point):
    z: int = 0


def test_fields_come_positionally_or_by_name_with_their_defaults():
    assert Point(1).as_dict() == {"x": 1, "y": 0, "tags": {}}
    assert Point(1, 2) == Point(y=2, x=1)
    assert Point(3, -4).norm1() == 7
    assert repr(Point(1, y=2)) == "Point(x=1, y=2, tags={})"


@pytest.mark.parametrize("make, message", [
    (lambda: Point(), "missing arguments: x"),
    (lambda: Point(1, 2, {}, 4), "takes 3 arguments, 4 given"),
    (lambda: Point(1, x=2), "multiple values for argument 'x'"),
    (lambda: Point(1, w=2), "unexpected keyword argument 'w'"),
])
def test_wrong_arguments_are_refused_as_a_call_would_be(make, message):
    with pytest.raises(TypeError, match=message):
        make()


def test_a_record_cannot_be_changed_only_replaced():
    point = Point(1)
    with pytest.raises(AttributeError):
        point.x = 2
    with pytest.raises(AttributeError):
        del point.y
    moved = point.replace(y=5)
    assert (point.y, moved.y, moved.x) == (0, 5, 1)
    with pytest.raises(TypeError):
        point.replace(w=1)


def test_a_mutable_default_is_each_records_own():
    first, second = Point(1), Point(1)
    assert first.tags == {} and first.tags is not second.tags


def test_equality_and_hash_follow_the_class_and_the_fields():
    assert Point(1, 2) == Point(1, 2) and hash(Point(1, 2, ())) == hash(Point(1, 2, ()))
    assert Point(1, 2) != Point(1, 3)
    assert Point(1, 2) != Point3(1, 2)
    assert Point(1, 2) != (1, 2, {})
    assert len({Point(1, 2, ()), Point(1, 2, ())}) == 1
    with pytest.raises(TypeError):
        hash(Point(1, 2))  # a dict field, as with a frozen dataclass


def test_a_subclass_adds_its_fields_after_its_parents():
    assert Point3(1, 2, {}, 3).as_dict() == {"x": 1, "y": 2, "tags": {}, "z": 3}
    assert Point3(1, z=3).norm1() == 1
