import pytest

from autellix_engine.core.routing import (
    LOCALITY_THRESHOLD,
    NoHealthyReplicaError,
    RouteInfo,
    create_router,
)


def short(pid="p"):
    return RouteInfo(pid, 100)


def long(pid="p"):
    return RouteInfo(pid, LOCALITY_THRESHOLD + 1)


def test_short_calls_spread_to_the_least_used_replica():
    r = create_router("locality", 3)
    picks = [r.select(short(f"p{i}")) for i in range(6)]
    assert picks == [0, 1, 2, 0, 1, 2] and r.in_flight == [2, 2, 2]


def test_long_calls_stay_with_their_programs_pinned_replica():
    r = create_router("locality", 2)
    first = r.select(long("a"))
    r.select(short("x"))  # load elsewhere does not move the pin
    r.select(short("y"))
    assert all(r.select(long("a")) == first for _ in range(5))
    assert r.select(long("b")) != first or r.in_flight[1 - first] > r.in_flight[first]


def test_threshold_is_inclusive_for_small_requests():
    r = create_router("locality", 2)
    r.select(RouteInfo("a", LOCALITY_THRESHOLD))
    assert "a" not in r.pins


def test_a_dead_replica_is_skipped_and_its_programs_re_pinned():
    r = create_router("locality", 2)
    pinned = r.select(long("a"))
    r.set_health(pinned, False)
    assert r.select(long("a")) == 1 - pinned
    assert all(r.select(short(f"s{i}")) == 1 - pinned for i in range(3))
    r.set_health(pinned, True)  # rejoins
    assert pinned in {r.select(short(f"t{i}")) for i in range(4)}


def test_done_releases_in_flight_counts():
    r = create_router("least_used", 2)
    i = r.select(short())
    r.done(i)
    assert r.in_flight == [0, 0]


def test_round_robin_cycles_over_healthy_replicas():
    r = create_router("round_robin", 3)
    r.set_health(1, False)
    assert [r.select(short()) for _ in range(4)] == [0, 2, 0, 2]


def test_no_healthy_replica_and_unknown_names_are_clear_errors():
    r = create_router("least_used", 1)
    r.set_health(0, False)
    with pytest.raises(NoHealthyReplicaError, match="No replica is in the pool"):
        r.select(short())
    with pytest.raises(ValueError, match="locality"):
        create_router("random", 2)


def test_a_retry_avoids_the_replica_that_failed_while_another_is_healthy():
    router = create_router("least_used", 3)
    info = RouteInfo("p", 10)
    assert router.select(info, avoid={0}) == 1
    assert router.select(info, avoid={0, 1}) == 2
    router.set_health(2, False)
    # Every healthy replica failed the call already: try them again rather than none.
    assert router.select(info, avoid={0, 1}) == 0


def test_locality_re_pins_a_long_call_away_from_a_replica_it_avoids():
    router = create_router("locality", 2, threshold=4)
    info = RouteInfo("p", 100)
    first = router.select(info)
    assert router.select(info) == first
    assert router.select(info, avoid={first}) == 1 - first
