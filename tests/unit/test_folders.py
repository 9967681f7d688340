"""A sink's folder (pipeline_lib.sinks.folders) on the local file system, worked on through the
operating system, and on a file system of Hadoop's own (viewfs over local folders), through
Hadoop's API: the same operations, the same answers."""

import pytest

from pipeline_lib.sinks.folders import LOCAL_FILE_SYSTEM, Folder, RenameError


@pytest.fixture(params=["local", "viewfs"])
def folder_at(request, tmp_path, spark):
    """A function giving the Folder of a path under mount point ``a`` or ``b``."""
    if request.param == "local":
        return lambda path: Folder(spark, str(tmp_path / path))
    mounted = request.getfixturevalue("viewfs")
    return lambda path: Folder(spark, mounted(path))


def test_lines_written_are_read_back_and_a_touched_file_exists(folder_at):
    folder = folder_at("a/out")

    folder.write_lines("_publishing/3", ["part-1.csv", "day=1/part-2.csv"])
    folder.touch("_batches/3")

    assert folder.read_lines("_publishing/3") == ["part-1.csv", "day=1/part-2.csv"]
    assert (folder.exists("_batches/3"), folder.exists("_batches/4")) == (True, False)


def test_files_are_the_part_files_under_the_partition_folders_sorted(folder_at):
    folder = folder_at("a/out")
    for name in ("s/day=2/part-1", "s/day=1/part-2", "s/day=1/other", "s/part-0"):
        folder.touch(name)

    assert (folder.files("s", 1), folder.files("s", 0)) == (["day=1/part-2", "day=2/part-1"], ["part-0"])


def test_a_rename_never_replaces_a_file_at_the_target(folder_at):
    folder = folder_at("a/out")
    folder.write_lines("kept", ["first"])
    folder.write_lines("staged", ["second"])

    with pytest.raises(RenameError, match=r"could not rename .*a/out/staged to .*a/out/kept"):
        folder.rename("staged", "kept")
    assert (folder.read_lines("kept"), folder.exists("staged")) == (["first"], True)


def test_a_move_of_a_missing_file_is_an_os_error_naming_both_paths(folder_at):
    source, target = folder_at("a/one"), folder_at("a/two")

    with pytest.raises(RenameError, match=r"could not rename .*a/one/missing\.txt to .*a/two/moved\.txt"):
        source.move("missing.txt", target, "moved.txt")


def test_a_file_moves_to_another_folder_of_its_mount_point(folder_at):
    source, target = folder_at("a/one"), folder_at("a/two")
    source.write_lines("staged.csv", ["id"])
    target.make_folders("_staging")

    source.move("staged.csv", target, "_staging/batch.csv")

    assert (source.exists("staged.csv"), target.read_lines("_staging/batch.csv")) == (False, ["id"])


def test_a_delete_removes_a_folder_with_its_files_and_passes_over_what_is_not_there(folder_at):
    folder = folder_at("a/out")
    folder.touch("_staging/batch-1/part-0")

    folder.delete("_staging/batch-1")
    folder.delete("_staging/batch-2")

    assert (folder.exists("_staging/batch-1"), folder.exists("_staging")) == (False, True)


def test_a_move_across_viewfs_mount_points_is_an_os_error_naming_both_paths(spark, viewfs):
    source, target = Folder(spark, viewfs("a/out")), Folder(spark, viewfs("b/out"))
    source.touch("part-0")

    with pytest.raises(RenameError, match=r"a/out/part-0 to .*b/out/part-0: .*Renames across Mount points"):
        source.move("part-0", target, "part-0")


def test_lines_written_over_a_file_hadoop_wrote_drop_its_stale_checksum(spark, tmp_path):
    hadoop = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(str(tmp_path / "list"))
    stream = hadoop.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).create(hadoop, True)
    stream.write(bytearray("before\n", "utf-8"))
    stream.close()

    Folder(spark, str(tmp_path)).write_lines("list", ["after"])

    assert [row.value for row in spark.read.text(str(tmp_path / "list")).collect()] == ["after"]


def test_a_local_folder_is_worked_on_without_hadoops_checksum_files(spark, tmp_path):
    folder = Folder(spark, str(tmp_path / "out"))

    folder.write_lines("_publishing/0", ["part-0.csv"])
    folder.touch("_batches/0")

    assert folder.file_system() == LOCAL_FILE_SYSTEM
    assert sorted(path.name for path in (tmp_path / "out").rglob("*") if path.is_file()) == ["0", "0"]


def test_a_file_uri_is_a_local_folder(spark, tmp_path):
    folder = Folder(spark, (tmp_path / "out").as_uri())

    folder.touch("_batches/0")

    # Spark is given the URI as it is: a path without its scheme would be on the default file system.
    assert (folder.path("_batches"), folder.file_system()) == (f"{(tmp_path / 'out').as_uri()}/_batches", LOCAL_FILE_SYSTEM)
    assert (tmp_path / "out" / "_batches" / "0").exists()
