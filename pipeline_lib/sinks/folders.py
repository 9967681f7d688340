"""A sink's folder: the file operations of its staging, commit and ledger, by name.

A folder on the local file system is worked on through the operating system. Hadoop's local
file system, without its native library (pyspark ships none), sets the permissions of each file
and folder it creates by running ``chmod`` in a new process, and writes a checksum file beside
each file: about 12 ms for a file and 5 ms for each level of folders, against a tenth of a
millisecond. A micro-batch's commit creates half a dozen of them. Folders of other file systems
(``hdfs://``, ``s3a://``, ``viewfs://``) go through Hadoop's FileSystem API, in the JVM.
"""

from __future__ import annotations

import glob
import os
import shutil
import weakref
from typing import Any, Dict, List, Optional, Tuple, Union

from py4j.protocol import Py4JJavaError
from pyspark.sql import SparkSession

LOCAL_FILE_SYSTEM = "file:///"


class RenameError(OSError):
    """A rename the file system refused, naming both paths."""


class _HadoopFiles:
    """File operations on absolute paths through one Hadoop FileSystem."""

    def __init__(self, file_system: Any, path_class: Any, io: Any):
        self._fs, self._path, self._io = file_system, path_class, io
        self.uri = str(file_system.getUri().toString())

    def exists(self, path: str) -> bool:
        return bool(self._fs.exists(self._path(path)))

    def matches(self, folder: str, pattern: str) -> List[str]:
        levels = pattern.count("/") + 1
        found = []
        for status in self._fs.globStatus(self._path(f"{folder}/{pattern}")) or []:
            path, names = status.getPath(), []
            for _ in range(levels):
                names.append(path.getName())
                path = path.getParent()
            found.append("/".join(reversed(names)))
        return found

    def delete(self, path: str) -> None:
        self._fs.delete(self._path(path), True)

    def rename(self, source: str, target: str) -> None:
        try:
            renamed = self._fs.rename(self._path(source), self._path(target))
        except Py4JJavaError as error:  # viewfs throws across mount points
            raise OSError(str(error.java_exception)) from error
        if not renamed:
            raise OSError("the file system refused the rename")

    def write(self, path: str, text: str) -> None:
        stream = self._fs.create(self._path(path), True)
        try:
            stream.write(bytearray(text, "utf-8"))
        finally:
            stream.close()

    def read(self, path: str) -> str:
        stream = self._fs.open(self._path(path))
        try:
            return str(self._io.toString(stream, "UTF-8"))
        finally:
            stream.close()

    def make_folders(self, path: str) -> None:
        self._fs.mkdirs(self._path(path))


class _LocalFiles:
    """The same operations on local paths, as Hadoop's local file system does them: a file
    created makes its folders, a rename never replaces what is at the target."""

    uri = LOCAL_FILE_SYSTEM

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def matches(self, folder: str, pattern: str) -> List[str]:
        return [os.path.relpath(path, folder) for path in glob.glob(os.path.join(glob.escape(folder), pattern))]

    def delete(self, path: str) -> None:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
            return
        head, tail = os.path.split(path)
        for name in (path, os.path.join(head, f".{tail}.crc")):  # and the checksum Hadoop wrote with it
            if os.path.lexists(name):
                os.remove(name)

    def rename(self, source: str, target: str) -> None:
        if os.path.lexists(target):
            raise FileExistsError(f"{target} exists")
        os.rename(source, target)

    def write(self, path: str, text: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            with open(path, "w", encoding="utf-8") as file:
                file.write(text)
        except OSError as error:  # a failed write or close names no file: a full disk would name no folder
            raise OSError(error.errno, error.strerror, path) from error

    def read(self, path: str) -> str:
        with open(path, encoding="utf-8") as file:
            return file.read()

    def make_folders(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)


_Files = Union[_HadoopFiles, _LocalFiles]


class _Jvm:
    """What a JVM's folders share: Hadoop's Path and commons-io's IOUtils (a lookup costs a
    round trip for each name of the package path), and which locations are local, by their
    local path (finding a location's file system takes several round trips, and a batch opens a
    dozen folders). Other file systems are looked up for each folder, as Hadoop caches them and
    drops those closed."""

    def __init__(self, jvm: Any):
        self.path_class, self.io = jvm.org.apache.hadoop.fs.Path, jvm.org.apache.commons.io.IOUtils
        self.local_paths: Dict[str, Optional[str]] = {}


_JVMS: "weakref.WeakKeyDictionary[Any, _Jvm]" = weakref.WeakKeyDictionary()


def _files_of(spark: SparkSession, location: str) -> Tuple[str, _Files]:
    """The root of ``location`` as its file operations name it, and those operations."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None, "a SparkContext with its JVM"
    if jvm not in _JVMS:
        _JVMS[jvm] = _Jvm(jvm)
    shared = _JVMS[jvm]
    if location not in shared.local_paths:
        path = shared.path_class(location)
        is_local = str(path.getFileSystem(_configuration(spark)).getUri().getScheme()) == "file"
        shared.local_paths[location] = (str(path.toUri().getPath()).rstrip("/") or "/") if is_local else None
    local = shared.local_paths[location]
    if local is not None:
        return local, _LocalFiles()
    file_system = shared.path_class(location).getFileSystem(_configuration(spark))
    return location, _HadoopFiles(file_system, shared.path_class, shared.io)


def _configuration(spark: SparkSession) -> Any:
    return spark.sparkContext._jsc.hadoopConfiguration()


class Folder:
    """A folder of any file system Spark writes to (local, ``hdfs://``, ``s3a://``), names
    relative to it."""

    def __init__(self, spark: SparkSession, location: str):
        self.root, self._files = _files_of(spark, location if "://" in location else os.path.abspath(location))

    def path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def exists(self, name: str) -> bool:
        return self._files.exists(self.path(name))

    def files(self, folder: str, depth: int) -> List[str]:
        """The files Spark wrote in ``folder`` (``part-*``) under ``depth`` levels of partition
        folders (``key=value``), as paths relative to ``folder``, sorted."""
        return sorted(self._files.matches(self.path(folder), "*=*/" * depth + "part-*"))

    def delete(self, name: str) -> None:
        """Delete ``name``, a file or a folder with all it holds; nothing when it is not there."""
        self._files.delete(self.path(name))

    def rename(self, source: str, target: str) -> None:
        """Rename ``source`` to ``target`` in this folder; :class:`RenameError` when it cannot
        (a target that is there, a folder of it missing)."""
        _rename(self.path(source), self._files, self.path(target))

    def move(self, source: str, folder: "Folder", target: str) -> None:
        """Rename ``source`` of this folder to ``target`` of ``folder``, on the same file system;
        :class:`RenameError` when it cannot (also a rename across mount points of ``viewfs://``)."""
        _rename(self.path(source), self._files, folder.path(target))

    def touch(self, name: str) -> None:
        self._files.write(self.path(name), "")

    def write_lines(self, name: str, lines: List[str]) -> None:
        self._files.write(self.path(name), "".join(line + "\n" for line in lines))

    def read_lines(self, name: str) -> List[str]:
        return [line for line in self._files.read(self.path(name)).splitlines() if line]

    def make_folders(self, name: str) -> None:
        self._files.make_folders(self.path(name))

    def file_system(self) -> str:
        """The file system's URI: ``file:///`` for a local folder."""
        return self._files.uri


def _rename(source: str, files: _Files, target: str) -> None:
    try:
        files.rename(source, target)
    except OSError as error:
        raise RenameError(f"could not rename {source} to {target}: {error}") from error
