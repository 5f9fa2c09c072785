"""Whether a build folder can be shared by several machines (stages/core/shared_fs.py): read from the
kernel's mountinfo as Linux writes it, and the ledger's journal on a network filesystem."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from stages.core import shared_fs
from stages.core.errors import EnvironmentFailure, InputError
from stages.core.shared_fs import mount_of, why_not_shared

# Lines as /proc/self/mountinfo writes them (mount options, then " - ", type, source, super options).
MOUNTS = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
120 22 0:52 / /mnt/farm rw,relatime shared:70 - nfs4 10.0.0.5:/export/farm rw,vers=4.2,rsize=1048576,\
wsize=1048576,namlen=255,hard,proto=tcp,timeo=600,retrans=2,sec=sys,clientaddr=10.0.0.7,local_lock=none,addr=10.0.0.5
121 22 0:53 / /mnt/v3 rw,relatime shared:71 - nfs 10.0.0.5:/export/v3 rw,vers=3,hard,nolock,proto=tcp,timeo=600,\
retrans=2,sec=sys,mountaddr=10.0.0.5,mountvers=3,mountport=20048,mountproto=udp,local_lock=all,addr=10.0.0.5
122 22 0:54 / /mnt/flock rw,relatime shared:74 - nfs4 10.0.0.5:/export/f rw,vers=4.1,hard,proto=tcp,sec=sys,\
local_lock=flock,addr=10.0.0.5
123 22 0:55 / /mnt/smb rw,relatime shared:72 - cifs //nas/farm rw,vers=3.1.1,cache=strict,username=x,uid=0,\
noforceuid,gid=0,noforcegid,addr=10.0.0.9,soft,nounix,serverino,mapposix,rsize=4194304,wsize=4194304,actimeo=1
124 22 0:56 / /mnt/docker-smb rw,relatime shared:75 - cifs //host/c rw,vers=3.0,nobrl,soft,actimeo=1
125 22 0:57 / /mnt/ssh rw,nosuid,nodev,relatime shared:73 - fuse.sshfs me@host:/farm rw,user_id=0,group_id=0
126 22 0:58 / /mnt/my\\040farm rw,relatime shared:76 - ceph 10.0.0.5:6789:/ rw,name=farm,secret=<hidden>,acl
127 22 0:59 / /lustre rw,relatime shared:77 - lustre 10.0.0.5@tcp:/fs rw,localflock,lazystatfs
128 126 0:60 / /mnt/my\\040farm/scratch rw,relatime shared:78 - tmpfs tmpfs rw,size=1048576k
"""


@pytest.fixture
def mountinfo(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "mountinfo"
    path.write_text(MOUNTS + f"200 22 0:70 / {tmp_path}/sshfs rw,relatime - fuse.sshfs me@h:/x rw\n",
                    encoding="utf-8")
    monkeypatch.setattr(shared_fs, "MOUNTINFO", path)
    return path


@pytest.mark.parametrize("folder, kind, verdict", [
    ("/home/ann/drama/build", "ext4", None),  # one machine: every worker there shares its locks
    ("/mnt/farm/drama/build", "nfs4", None),
    ("/mnt/v3/drama", "nfs", "nolock"),
    ("/mnt/flock/drama", "nfs4", "local_lock=flock"),
    ("/mnt/smb/drama", "cifs", None),
    ("/mnt/docker-smb/drama", "cifs", "nobrl"),
    ("/mnt/ssh/drama", "fuse.sshfs", "does not carry locks"),
    ("/mnt/my farm/drama", "ceph", None),  # a mount point with a space (\040 in mountinfo)
    ("/mnt/my farm/scratch/x", "tmpfs", None),  # the longest mount point above the folder wins
    ("/lustre/drama", "lustre", "only when mounted with flock"),
])
def test_the_build_folders_filesystem_says_whether_locks_hold_across_machines(mountinfo, folder, kind, verdict):
    mount = mount_of(Path(folder), mountinfo)
    assert mount.fstype == kind
    why = why_not_shared(mount, kernel="6.8.0-45-generic")
    assert (why is None) if verdict is None else (verdict in why), why


def test_smb_before_linux_5_5_keeps_flock_local(mountinfo):
    mount = mount_of(Path("/mnt/smb/drama"), mountinfo)
    assert "5.5" in why_not_shared(mount, kernel="5.4.0-150-generic")
    assert why_not_shared(mount, kernel="5.15.0") is None


def test_a_render_spread_over_machines_refuses_a_folder_whose_locks_stay_local(mountinfo, tmp_path):
    build = tmp_path / "sshfs" / "drama" / "build"
    with pytest.raises(InputError) as exc:
        shared_fs.refuse_unshared(build)
    assert "fuse.sshfs does not carry locks between machines" in exc.value.message
    assert "NFS" in exc.value.hint and "same path on every machine" in exc.value.hint
    shared_fs.refuse_unshared(Path("/mnt/farm/drama/build"))  # NFS with its defaults: shared


def test_a_worker_that_does_not_see_the_renders_build_folder_stops_it(tmp_path):
    build = tmp_path / "build"
    token = shared_fs.mark_farm(build)
    shared_fs.sees_farm(str(build), token)  # this machine sees it: nothing to say
    with pytest.raises(EnvironmentFailure) as exc:
        shared_fs.sees_farm(str(build), "f" * 32)  # another render's token: another folder than the render's
    assert "does not see the build folder this render writes" in exc.value.message
    assert "another render's" in exc.value.message and "same path on every worker" in exc.value.hint
    with pytest.raises(EnvironmentFailure, match="no .farm there"):
        shared_fs.sees_farm(str(tmp_path / "elsewhere"), token)


def test_a_ledger_on_a_network_filesystem_keeps_a_rollback_journal(tmp_path, monkeypatch):
    """WAL needs memory every process shares, so one host: on NFS or SMB the ledger journals as SQLite
    did before WAL (and syncs fully); on a local disk it keeps WAL."""
    from stages.core import ledger as ledger_module
    from stages.core.ledger import Kind, Ledger

    for folder, network in ((tmp_path / "nfs", True), (tmp_path / "local", False)):
        monkeypatch.setattr(ledger_module, "network", lambda f, n=network: n)
        ledger = Ledger(folder / "ledger.sqlite")
        ledger.start("ep01-sc01-sh001", kind=Kind.SHOT, episode=1, spec_hash="k")
        with sqlite3.connect(folder / "ledger.sqlite") as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == ("delete" if network else "wal")
        assert (folder / "ledger.sqlite-wal").exists() is not network


def test_this_machines_own_folders_are_read_from_its_mountinfo(tmp_path):
    mount = mount_of(tmp_path)
    assert mount is not None and tmp_path.as_posix().startswith(mount.point.rstrip("/") or "/")
    assert shared_fs.network(str(tmp_path)) is (mount.fstype not in shared_fs.LOCAL)
