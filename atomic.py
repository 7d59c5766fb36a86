"""Files (and pictures) written whole or not at all, and what a killed writer leaves behind.

Every snapshot and model file (training), and every picture colorize.py writes, goes
through ``write_file``: it is written to a hidden temporary name in the same folder
(``.NAME.RANDOM.part``), flushed to the disk, and renamed into place.
A rename within one folder is atomic, so a reader, a resumed run or a crash finds the
old file or the new one, never half of one. A writer killed before the rename leaves
only its ``.part`` file; ``remove_stale`` deletes those, and the temporary folders
that Chainer's own writers (its default snapshot writer, LogReport) leave behind.
"""
import os
import re
import secrets
import shutil
import tempfile

from PIL import Image

TEMP_SUFFIX = '.part'
# What Chainer 7's SimpleWriter (tmpsnapshot_iter_N.npzXXXXXXXX/) and LogReport
# (logXXXXXXXX/, tempfile.mkdtemp's 8 random characters) leave when killed mid-write.
CHAINER_TEMP_FOLDERS = re.compile(r'(tmpsnapshot_iter_\d+\.npz|log)[a-z0-9_]{8}')


def temporary_name(name):
    """The hidden name write_file writes ``name`` under first."""
    return '.{}.{}{}'.format(name, secrets.token_hex(4), TEMP_SUFFIX)


def name_problem(path):
    """Why path cannot be written through write_file for its name's length, or None: the
    temporary name adds a few characters, and the file system's limit counts bytes."""
    folder, name = os.path.split(os.path.abspath(path))
    try:
        limit = os.pathconf(folder, 'PC_NAME_MAX')
    except (OSError, ValueError):
        limit = 255
    longest = limit - len(temporary_name(''))
    if len(os.fsencode(name)) > longest:
        return 'the file name {}... is too long: at most {} bytes here'.format(name[:40], longest)
    return None


def write_file(path, save):
    """Calls save(temporary_path) to write a new file beside path, then renames it to
    path. On any failure (Ctrl-C included) the temporary file is removed and path is
    left as it was. save gets a path, not a file, since Chainer's, gensim's and
    Pillow's savers all take one (Pillow: pass format=, the name ends in .part)."""
    folder, name = os.path.split(os.path.abspath(path))
    temp = os.path.join(folder, temporary_name(name))
    try:
        save(temp)
        fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(fd)  # the data is on the disk before the name points at it
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        try:
            os.remove(temp)
        except OSError:
            pass
        raise


def write_text(path, text):
    def save(temp):
        with open(temp, 'w', encoding='utf-8') as f:
            f.write(text)
    write_file(path, save)


def path_problem(path):
    """Why write_file cannot write path, or None: a folder is there, its folder is missing
    or cannot be written, or its name is too long; checked before any work is done."""
    if os.path.isdir(path):
        return '{} is a folder: give a file name in it'.format(path)
    folder = os.path.dirname(path) or '.'
    if not os.path.isdir(folder):
        return 'the output folder {} does not exist'.format(folder)
    try:
        check_writable(folder)
    except OSError as error:
        return 'cannot write to the output folder {} ({})'.format(folder, error.strerror or error)
    return name_problem(path)


def write_image(image, path):
    """Writes a PIL image whole or not at all (a file that was at path stays as it was), in
    the format its extension names; an OSError names path."""
    image_format = Image.registered_extensions()[os.path.splitext(path)[1].lower()]
    try:
        write_file(path, lambda temp: image.save(temp, format=image_format))
    except OSError as error:
        raise OSError(error.errno, error.strerror or str(error), path) from None


def check_writable(folder):
    """Creates and removes a temporary file in folder, so that a folder that cannot be
    written (missing, read-only, full) is an OSError before any work is done. A probe
    rather than os.access, which says yes to root even on a read-only file system."""
    fd, probe = tempfile.mkstemp(prefix='.probe.', suffix=TEMP_SUFFIX, dir=folder)
    os.close(fd)
    os.remove(probe)


def is_temporary(folder, name):
    """Whether folder/name is something a killed writer left (see the module's docstring)."""
    path = os.path.join(folder, name)
    if name.startswith('.') and name.endswith(TEMP_SUFFIX):
        return os.path.isfile(path)
    chainer_temp = CHAINER_TEMP_FOLDERS.fullmatch(name)
    if not chainer_temp or not os.path.isdir(path) or os.path.islink(path):
        return False
    # Only what Chainer writes there: a user's folder named like one is left alone.
    expected = 'log.json' if chainer_temp.group(1) == 'log' else chainer_temp.group(1)[3:]
    return all(entry == expected for entry in os.listdir(path))


def remove_stale_of(path):
    """Deletes the temporaries that killed writes of path left (.NAME.XXXXXXXX.part): a
    command that writes path again, and so holds it, removes them first."""
    folder, name = os.path.split(os.path.abspath(path))
    left = re.compile(re.escape('.{}.'.format(name)) + '[0-9a-f]{8}' + re.escape(TEMP_SUFFIX))
    for entry in os.listdir(folder):
        if left.fullmatch(entry) and os.path.isfile(os.path.join(folder, entry)):
            os.remove(os.path.join(folder, entry))


def remove_stale(folder):
    """Deletes the temporaries killed writers left in folder; returns their names."""
    removed = []
    for name in sorted(os.listdir(folder)):
        if is_temporary(folder, name):
            path = os.path.join(folder, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
            removed.append(name)
    return removed
