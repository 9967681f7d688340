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
import urllib.parse
import weakref
from typing import Any, Dict, List, Union

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
    """The same operations on local paths (``/data/out`` or ``file:///data/out``), as Hadoop's
    local file system does them: a file created makes its folders, a rename never replaces what
    is at the target."""

    uri = LOCAL_FILE_SYSTEM

    def exists(self, path: str) -> bool:
        return os.path.lexists(_local(path))

    def matches(self, folder: str, pattern: str) -> List[str]:
        local = _local(folder)
        return [os.path.relpath(path, local) for path in glob.glob(os.path.join(glob.escape(local), pattern))]

    def delete(self, path: str) -> None:
        local = _local(path)
        if os.path.isdir(local) and not os.path.islink(local):
            shutil.rmtree(local)
            return
        for name in (local, _checksum(local)):
            if os.path.lexists(name):
                os.remove(name)

    def rename(self, source: str, target: str) -> None:
        if os.path.lexists(_local(target)):
            raise FileExistsError(f"{target} exists")
        os.rename(_local(source), _local(target))

    def write(self, path: str, text: str) -> None:
        local = _local(path)
        os.makedirs(os.path.dirname(local), exist_ok=True)
        checksum = _checksum(local)
        if os.path.lexists(checksum):  # Hadoop would check the new text against it
            os.remove(checksum)
        try:
            with open(local, "w", encoding="utf-8") as file:
                file.write(text)
        except OSError as error:  # a failed write or close names no file: a full disk would name no folder
            raise OSError(error.errno, error.strerror, local) from error

    def read(self, path: str) -> str:
        with open(_local(path), encoding="utf-8") as file:
            return file.read()

    def make_folders(self, path: str) -> None:
        os.makedirs(_local(path), exist_ok=True)


def _local(path: str) -> str:
    """A local path as the operating system names it: ``file:///data/out`` is ``/data/out``."""
    return urllib.parse.urlsplit(path).path if path.startswith("file:") else path


def _checksum(path: str) -> str:
    """The checksum file Hadoop's local file system writes beside ``path``."""
    head, tail = os.path.split(path)
    return os.path.join(head, f".{tail}.crc")


_Files = Union[_HadoopFiles, _LocalFiles]


class _Shared:
    """What the folders of one SparkContext share: Hadoop's Path and commons-io's IOUtils (a
    lookup costs a round trip for each name of the package path), and which locations are local
    (finding a location's file system takes several round trips, and a batch opens a dozen
    folders). Other file systems are looked up for each folder, as Hadoop caches them and drops
    those closed."""

    def __init__(self, jvm: Any):
        self.path_class, self.io = jvm.org.apache.hadoop.fs.Path, jvm.org.apache.commons.io.IOUtils
        self.local: Dict[str, bool] = {}


# By SparkContext: a new one may name another default file system, in the same JVM.
_SHARED: "weakref.WeakKeyDictionary[Any, _Shared]" = weakref.WeakKeyDictionary()


def _files_of(spark: SparkSession, location: str) -> _Files:
    """The file operations of ``location``."""
    context = spark.sparkContext
    if context not in _SHARED:
        assert context._jvm is not None, "a SparkContext with its JVM"
        _SHARED[context] = _Shared(context._jvm)
    shared = _SHARED[context]
    known_local = shared.local.get(location)
    if known_local:
        return _LocalFiles()
    file_system = shared.path_class(location).getFileSystem(_configuration(spark))
    if known_local is None:
        shared.local[location] = str(file_system.getUri().getScheme()) == "file"
        if shared.local[location]:
            return _LocalFiles()
    return _HadoopFiles(file_system, shared.path_class, shared.io)


def _configuration(spark: SparkSession) -> Any:
    return spark.sparkContext._jsc.hadoopConfiguration()


class Folder:
    """A folder of any file system Spark writes to (local, ``hdfs://``, ``s3a://``), names
    relative to it."""

    def __init__(self, spark: SparkSession, location: str):
        # The root as Spark is given it, with its scheme: without one, Spark takes the default
        # file system's.
        self.root = location if "://" in location else os.path.abspath(location)
        self._files = _files_of(spark, self.root)

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
