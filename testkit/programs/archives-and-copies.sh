# tar with every file type the ring can hold (regular, directory, symbolic link, hard link;
# a fifo too when $KERNEL_OBJECTS is 1, which needs the kernel), a 200-byte name, a non-ASCII name and a sparse file; cp -a; rsync -a into and out of $D
# ($OUT: a directory outside); python3 -m venv and an import from it.
set -u
cd "$D"
mkdir src && cd src
echo regular > file; mkdir dir; echo inner > dir/inner; ln -s file link; ln file hard
long=$(printf 'n%.0s' $(seq 1 200)); echo long > "$long"; echo accents > 'ünïcödé-名前.txt'
truncate -s 1M sparse; printf 'end' | dd of=sparse bs=1 seek=2000000 conv=notrunc 2>/dev/null
if [ "${KERNEL_OBJECTS:-0}" = 1 ]; then mkfifo pipe; fi
chmod 640 file; chmod 700 dir; touch -d '2020-01-02 03:04:05' file dir/inner dir sparse
cd ..
tar -cSf t.tar -C src .; echo "tar c: $?"
tar -tf t.tar | sort
mkdir x; tar -xSpf t.tar -C x; echo "tar x: $?"
show() {
    (cd "$1" && { find . -type d -printf '%p %y %n %m\n'
        find . ! -type d -printf '%p %y %s %n %m %TY-%Tm-%Td %l\n'; } | LC_ALL=C sort)
}
show x
cmp x/sparse src/sparse && echo "sparse same"
cp -a src cpa; echo "cp -a: $?"; show cpa
rsync -aH src/ rs/; echo "rsync in: $?"; show rs
rsync -aH src/ "$OUT/"; echo "rsync out: $?"; rsync -aH "$OUT/" back/; echo "rsync back: $?"
diff -r src back && echo "round trip same"; show back
python3 -m venv venv; echo "venv: $?"
ls venv; test -f venv/pyvenv.cfg && echo "pyvenv.cfg"
mkdir -p mods/pkg; echo 'VALUE = 42' > mods/pkg/__init__.py
venv/bin/python -c 'import sys; sys.path.insert(0, "mods"); import pkg; print(pkg.VALUE, sys.prefix != sys.base_prefix)'
echo "venv python: $?"
# What holds the time of the run (the archive's headers) or the machine's Python goes: the
# tree left must be the same on both sides.
rm -rf t.tar venv
