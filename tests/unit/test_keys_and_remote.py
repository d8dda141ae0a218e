"""Keys, the forced command's decisions and the laptop client's remote: pure logic."""

import pytest

from zdd.errors import InvalidInput
from zdd.keys import Key, added, foreign_blobs, is_zdd_line, parse_public_key, removed, rendered
from zdd.remote import Remote, parse_url, remote_argv, ssh_command
from zdd.sshgate import Git, Refused, Zdd, decide

PUB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBnxYfVk0Gf9e8a8mU2qk3XHh0sYgq5x3P3E8y6rY7Wb alice@laptop"
ROOT = "/srv/zdd"
APPS = {"shop", "blog", "shop--feature-login", "blog--x"}
ALICE = Key("alice", "ssh-ed25519", PUB.split()[1], apps=("shop",))
ADMIN = Key("root", "ssh-ed25519", "AAAA", admin=True)


def test_a_public_key_parses_and_junk_is_refused():
    assert parse_public_key(PUB + "\n") == ("ssh-ed25519", PUB.split()[1])
    for bad, message in [("", "exactly one public key"), (PUB + "\n" + PUB, "exactly one"),
                         ('command="sh" ' + PUB, "not an OpenSSH public key"),
                         ("ssh-ed25519 not-base64!", "damaged"),
                         ("ssh-rsa " + PUB.split()[1], "not a ssh-rsa key")]:
        with pytest.raises(InvalidInput, match=message):
            parse_public_key(bad)


def test_authorized_keys_keep_foreign_lines_and_refuse_duplicates():
    hand = "# my own\nfrom=\"10.0.0.1\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHandWrittenKeyOfTheOperatorXXXXXXXXXXXXXX ops\n"
    text = rendered(hand, [ALICE], "/srv/zdd/bin/zdd")
    assert text.startswith(hand)
    zdd_line = text.splitlines()[-1]
    assert zdd_line.startswith('restrict,pty,command="/srv/zdd/bin/zdd ssh alice" ssh-ed25519 ') and is_zdd_line(zdd_line)
    assert rendered(text, [], "/srv/zdd/bin/zdd") == hand
    with pytest.raises(InvalidInput, match="already added, as 'alice'"):
        added([ALICE], Key("bob", "ssh-ed25519", ALICE.blob), set())
    with pytest.raises(InvalidInput, match="exists already"):
        added([ALICE], Key("alice", "ssh-ed25519", "other"), set())
    with pytest.raises(InvalidInput, match="a line zdd did not write"):
        added([], Key("ops", "ssh-ed25519", hand.split()[5]), foreign_blobs(hand))
    with pytest.raises(InvalidInput, match="no key named 'bob'"):
        removed([ALICE], "bob")


@pytest.mark.parametrize("command, decision", [
    ("git-receive-pack '/srv/zdd/shop.git'", Git("receive-pack", "/srv/zdd/shop.git")),
    ("git-upload-pack 'shop.git'", Git("upload-pack", "/srv/zdd/shop.git")),
    ("git-receive-pack '/shop.git/'", Git("receive-pack", "/srv/zdd/shop.git")),
    ("zdd status shop --json", Zdd(["status", "shop", "--json"])),
    ("/srv/zdd/bin/zdd env shop set 'A=x; rm -rf /'", Zdd(["env", "shop", "set", "A=x; rm -rf /"])),
    ("zdd run shop -- sh -c 'a && b'", Zdd(["run", "shop", "--", "sh", "-c", "a && b"])),
    ("zdd apps", Zdd(["apps", "--only", "shop,shop--feature-login"])),
    ("zdd storage shop list", Zdd(["storage", "shop", "list"])),
    ("zdd db list shop", Zdd(["db", "list", "shop"])),
    ("zdd db connect shop postgres", Zdd(["db", "connect", "shop", "postgres"])),
    ("zdd db create shop redis", Zdd(["db", "create", "shop", "redis"])),
    ("zdd backup shop --check", Zdd(["backup", "shop", "--check"])),
    ("zdd backups shop --json", Zdd(["backups", "shop", "--json"])),
    ("zdd limits shop", Zdd(["limits", "shop"])),
    ("zdd previews shop", Zdd(["previews", "shop"])),
    ("zdd logs shop--feature-login", Zdd(["logs", "shop--feature-login"])),
])
def test_what_an_app_key_may_run(command, decision):
    assert decide(ALICE, command, ROOT, APPS) == decision


@pytest.mark.parametrize("command, message", [
    (None, "no shell"),
    ("", "no shell"),
    ("bash", "'bash' is not allowed"),
    ("ls -la", "'ls' is not allowed"),
    ("zdd status shop; id", "shell syntax"),
    ("zdd status shop | cat", "shell syntax"),
    ("zdd status $(id)", "shell syntax"),
    ("zdd status `id`", "shell syntax"),
    ("zdd status shop > /tmp/x", "shell syntax"),
    ("zdd status 'shop", "quotes do not match"),
    ("git-receive-pack '/srv/zdd/blog.git'", "not allowed to use blog"),
    ("git-upload-pack 'blog.git'", "not allowed to use blog"),
    ("git-receive-pack '/srv/zdd/../zdd/shop.git'", "not an app's repository"),
    ("git-receive-pack '/etc/passwd'", "not an app's repository"),
    ("git-receive-pack 'shop.git' 'blog.git'", "takes one repository"),
    ("zdd status blog", "not allowed to use blog"),
    ("zdd keys list", "for admin keys"),
    ("zdd render", "for admin keys"),
    ("zdd destroy shop --yes", "for admin keys"),
    ("zdd init shop --domain x", "cannot be run over SSH"),
    ("zdd hook shop", "cannot be run over SSH"),
    ("zdd ssh root", "cannot be run over SSH"),
    ("zdd --root /tmp status shop", "cannot be run over SSH"),
    ("zdd status", "needs one of this key's apps"),
    ("zdd storage shop add /srv/zdd/storage/blog:/data", "for admin keys"),
    ("zdd apps --only blog", "`zdd apps` takes --json only"),
    ("zdd restore shop", "for admin keys"),
    ("zdd db destroy shop postgres", "removing a database is for admin keys"),
    ("zdd db upgrade shop postgres 17", "upgrading a database"),
    ("zdd previews shop on --domain '{branch}.shop.example.com'", "previews take host names"),
    ("zdd db list blog", "not allowed to use blog"),
    ("zdd db list", "needs one of this key's apps after the action"),
    ("zdd backup blog", "not allowed to use blog"),
    ("zdd limits shop web=none", "setting them is for admin keys"),
    ("zdd notify add https://example.com/hook", "for admin keys"),
    ("/usr/bin/zdd status shop", "'/usr/bin/zdd' is not allowed"),
    ("zdd status blog--x", "not allowed to use blog--x"),
])
def test_everything_else_is_refused(command, message):
    with pytest.raises(Refused, match=message.replace("(", r"\(").replace("$", r"\$")):
        decide(ALICE, command, ROOT, APPS)


def test_an_admin_key_runs_server_commands_for_every_app():
    assert decide(ADMIN, "zdd keys list", ROOT, APPS) == Zdd(["keys", "list"])
    assert decide(ADMIN, "zdd apps --json", ROOT, APPS) == Zdd(["apps", "--json"])
    assert decide(ADMIN, "zdd limits blog web=512m", ROOT, APPS) == Zdd(["limits", "blog", "web=512m"])
    assert decide(ADMIN, "zdd notify", ROOT, APPS) == Zdd(["notify"])
    assert decide(ADMIN, "git-receive-pack 'blog.git'", ROOT, APPS) == Git("receive-pack", "/srv/zdd/blog.git")


@pytest.mark.parametrize("url, remote", [
    ("ssh://deploy@example.com/srv/zdd/shop.git", Remote("example.com", "deploy", None, "/srv/zdd/shop.git", "shop")),
    ("ssh://deploy@example.com:2222/srv/zdd/shop.git", Remote("example.com", "deploy", "2222", "/srv/zdd/shop.git", "shop")),
    ("deploy@example.com:/srv/zdd/shop.git", Remote("example.com", "deploy", None, "/srv/zdd/shop.git", "shop")),
    ("example.com:shop", Remote("example.com", None, None, "shop", "shop")),
])
def test_remotes_parse(url, remote):
    assert parse_url("production", url) == remote


@pytest.mark.parametrize("url", ["/srv/zdd/shop.git", "https://example.com/shop.git", "file:///x/shop.git"])
def test_a_remote_that_is_not_ssh_is_refused(url):
    with pytest.raises(InvalidInput, match="not an SSH URL"):
        parse_url("production", url)


def test_the_laptop_command_becomes_the_server_command():
    remote = parse_url("production", "ssh://deploy@example.com:2222/srv/zdd/shop.git")
    assert remote_argv(remote, ["status"]) == ["/srv/zdd/bin/zdd", "status", "shop"]
    assert remote_argv(remote, ["apps", "--json"]) == ["/srv/zdd/bin/zdd", "apps", "--json"]
    assert remote_argv(remote, ["env", "set", "A=x y"]) == ["/srv/zdd/bin/zdd", "env", "shop", "set", "A=x y"]
    assert remote_argv(remote, ["db", "list"]) == ["/srv/zdd/bin/zdd", "db", "list", "shop"]
    assert remote_argv(remote, ["db", "create", "postgres"]) == ["/srv/zdd/bin/zdd", "db", "create", "shop", "postgres"]
    assert remote_argv(remote, ["db", "connect", "shop"]) == ["/srv/zdd/bin/zdd", "db", "connect", "shop"]
    assert ssh_command(remote, ["run", "--", "sh"], True, "ssh -i key") == [
        "ssh", "-i", "key", "-p", "2222", "-t", "deploy@example.com", "--", "/srv/zdd/bin/zdd run shop -- sh"]
    assert ssh_command(remote, ["env", "set", "A=x; y"], False, "ssh")[-1] == \
        "/srv/zdd/bin/zdd env shop set 'A=x; y'", "the server splits it again, and sees no shell syntax"
