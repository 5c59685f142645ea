# Fills the temporary folder, 1 MiB at a time (each file under the file-size limit), until the
# kernel says there is no room; keeps it full. ``fill`` reports how far it got; ``fill_and_fail``
# lets the error out.
import errno


def fill(x):
    written = 0
    try:
        while True:
            with open(f"/tmp/filler-{written}", "wb") as f:
                f.write(bytes(2**20))
            written += 1
    except OSError as e:
        print("full", written, errno.errorcode.get(e.errno))
    return x


def fill_and_fail(x):
    for i in range(100_000):
        with open(f"/tmp/filler-{i}", "wb") as f:
            f.write(bytes(2**20))
    return x


def write_a_little(x):
    with open("/tmp/little", "wb") as f:
        f.write(bytes(4 * 2**20))
    return x
