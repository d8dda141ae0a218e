"""Data services and backups: the pure parts (kinds, names, URLs, images, the list)."""

import pytest

from zdd import services
from zdd.backups import Item
from zdd.errors import InvalidInput


def test_a_service_is_named_for_its_app_and_reached_by_that_name():
    pg = services.Service("shop-eu", "postgres", "postgres:17", "pw", "now")
    assert (pg.container, pg.volume, pg.user) == ("zdd-shop-eu-postgres", "zdd-shop-eu-postgres-data", "shop_eu")
    assert pg.url() == "postgres://shop_eu:pw@zdd-shop-eu-postgres:5432/shop_eu"
    assert pg.environment() == {"POSTGRES_USER": "shop_eu", "POSTGRES_PASSWORD": "pw", "POSTGRES_DB": "shop_eu"}
    redis = services.Service("shop", "redis", "redis:7", "pw", "now")
    assert redis.url() == "redis://:pw@zdd-shop-redis:6379/0"
    assert "pw" not in " ".join(redis.command()), "the password reaches Redis on stdin, not its command line"
    assert services.network_name("shop") == "zdd-shop"


@pytest.mark.parametrize("kind, version, image, expected", [
    ("postgres", None, None, "postgres:17"),
    ("postgres", "15", None, "postgres:15"),
    ("redis", None, None, "redis:7"),
    ("redis", None, "registry.example.com:5000/redis:7.2", "registry.example.com:5000/redis:7.2"),
])
def test_the_image_is_the_official_one_unless_named(kind, version, image, expected):
    assert services.image_for(kind, version, image) == expected


@pytest.mark.parametrize("kind, version, image, message", [
    ("mysql", None, None, "unknown service type 'mysql'"),
    ("postgres", "17", "postgres:17", "not both"),
    ("postgres", "17; rm -rf /", None, "invalid version"),
    ("postgres", None, "Postgres 17", "invalid image name"),
    ("redis", None, "../redis", "invalid image name"),
])
def test_bad_service_input_is_refused(kind, version, image, message):
    with pytest.raises(InvalidInput, match=message):
        services.image_for(kind, version, image)


def test_one_service_of_each_type_per_app(tmp_path):
    pg = services.new_service("shop", "postgres", "postgres:17", "now")
    assert len(pg.password) == 48
    listed = services.added([], pg)
    with pytest.raises(InvalidInput, match="already has postgres"):
        services.added(listed, services.new_service("shop", "postgres", "postgres:16", "now"))
    services.write(tmp_path, listed)
    assert services.read(tmp_path) == listed
    assert (tmp_path / "services.json").stat().st_mode & 0o777 == 0o600
    assert services.find(listed, "shop", "postgres") == pg
    with pytest.raises(InvalidInput, match="has no redis"):
        services.find(listed, "shop", "redis")
    assert services.scratch_copy(pg).password != pg.password


def test_an_upgraded_service_has_a_container_and_volume_of_its_own_and_the_old_one_is_kept(tmp_path):
    old = services.Service("shop", "postgres", "postgres:15", "pw", "then")
    new = services.upgraded(old, "postgres:17", 2, "now")
    assert (new.container, new.volume, new.password) == ("zdd-shop-postgres-2", "zdd-shop-postgres-data-2", "pw")
    assert new.url() == "postgres://shop:pw@zdd-shop-postgres-2:5432/shop"
    assert old.runs_in("zdd-shop-postgres") and old.runs_in("/zdd-shop-postgres.1.x7y8z9")
    assert not old.runs_in("zdd-shop-postgres-2") and not old.runs_in("zdd-shop-postgres-2.1.x7y8z9")
    assert new.runs_in("zdd-shop-postgres-2.1.x7y8z9") and not new.runs_in("zdd-shop-postgres")
    services.write(tmp_path, [old])
    assert services.read(tmp_path)[0].generation == 0, "a list from before upgrades reads as generation 0"
    services.write(tmp_path, services.replaced([old], new))
    assert services.read(tmp_path) == [new]
    services.write_upgrades(tmp_path, {"postgres": {"from": old, "to": new, "at": "now"}})
    assert services.read_upgrades(tmp_path)["postgres"]["from"] == old
    assert (tmp_path / "upgrades.json").stat().st_mode & 0o777 == 0o600


def test_each_backed_up_item_is_one_file_in_the_repository():
    assert [Item(n).filename for n in ("postgres", "redis", "storage:media")] == [
        "postgres.dump", "redis.tar", "storage-media.tar"]


def test_schedules_parse_and_refuse_what_they_cannot_run():
    from zdd import schedule
    assert [schedule.parse_period(p) for p in ("hourly", "daily", "weekly", "30m", "6h", "2d")] == [
        3600, 86400, 604800, 1800, 21600, 172800]
    for bad in ("every day", "0m", "5s", "1w", "", "1m; rm -rf /"):
        with pytest.raises(InvalidInput, match="invalid schedule"):
            schedule.parse_period(bad)
    assert schedule.parse_keep([]) == {"last": 3, "daily": 7, "weekly": 4}
    assert schedule.parse_keep(["daily=14", "weekly=0", "monthly=6"]) == {"last": 3, "daily": 14, "monthly": 6}
    for bad in (["yearly=1"], ["daily"], ["daily=-1"], ["last=0", "daily=0", "weekly=0"]):
        with pytest.raises(InvalidInput):
            schedule.parse_keep(bad)


def test_a_backup_is_due_after_its_period_and_sooner_after_a_failure():
    import datetime

    from zdd import schedule
    now = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.timezone.utc)
    daily = schedule.Schedule("daily", 86400, {"last": 3}, "2026-11-01T00:00:00+00:00")
    ago = lambda hours: (now - datetime.timedelta(hours=hours)).isoformat()  # noqa: E731
    ok = {"id": "a", "reason": "scheduled", "outcome": "ok", "finished_at": ago(2)}
    failed = {"id": "b", "reason": "scheduled", "outcome": "failed", "finished_at": ago(0.5), "error": "disk full"}
    manual = {"id": "c", "reason": "manual", "outcome": "ok", "finished_at": ago(0.1)}
    assert schedule.is_due(daily, [], now)
    assert not schedule.is_due(daily, [ok, manual], now), "a manual backup does not move the schedule"
    assert schedule.is_due(daily, [{**ok, "finished_at": ago(24)}], now)
    assert schedule.is_due(daily, [ok, failed], now), "retried 15 minutes after a failure"
    assert schedule.warning(daily, [ok], now) is None
    assert "failed: disk full" in schedule.warning(daily, [ok, failed], now)
    assert "3d old" in schedule.warning(daily, [{**ok, "finished_at": ago(72)}], now)
    assert "is the backup timer installed" in schedule.warning(daily, [], now)


def test_an_sftp_target_is_reached_with_the_operators_key_and_zdds_known_hosts():
    from pathlib import Path

    from zdd.backup_target import SFTP_URL, sftp_command
    known = Path("/srv/zdd/backup-known-hosts")
    assert sftp_command("sftp:backup@nas.example.com:/srv/b", "/root/.ssh/k", known) == (
        "ssh -i /root/.ssh/k -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new "
        "-o UserKnownHostsFile=/srv/zdd/backup-known-hosts backup@nas.example.com -s sftp")
    assert sftp_command("sftp://b@10.0.0.5:2222//srv/b", "/k", known).endswith("-p 2222 b@10.0.0.5 -s sftp")
    for bad in ("sftp:nas.example.com:/srv", "sftp://b@host;id/x", "s3:https://x/y"):
        assert not SFTP_URL.fullmatch(bad)


@pytest.mark.parametrize("kind, version, image, message", [
    ("redis", "8", None, "reads the data files of older versions"),
    ("postgres", None, None, "give the version to upgrade to"),
    ("postgres", "15", None, "already runs postgres:15"),
    ("postgres", "17; rm -rf /", None, "invalid version"),
])
def test_an_upgrade_needs_a_new_postgres_version(kind, version, image, message):
    from types import SimpleNamespace

    from zdd import upgrade
    current = services.Service("shop", kind, f"{kind}:15", "pw", "now")
    with pytest.raises(InvalidInput, match=message):
        upgrade._target_image(SimpleNamespace(name="shop"), current, version, image)
    assert upgrade._target_image(SimpleNamespace(name="shop"), services.Service("shop", "postgres", "postgres:15", "pw",
                                 "now"), "17", None) == "postgres:17"


def test_a_data_containers_generation_is_read_from_its_name():
    assert services.generation_of("/zdd-shop-postgres-2") == 2
    assert services.generation_of("zdd-shop-postgres-3.1.abc123") == 3
    assert services.generation_of("zdd-shop-postgres") is None
