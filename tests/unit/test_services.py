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


def test_each_backed_up_item_is_one_file_in_the_repository():
    assert [Item(n).filename for n in ("postgres", "redis", "storage:media")] == [
        "postgres.dump", "redis.tar", "storage-media.tar"]
