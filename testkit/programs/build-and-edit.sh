# make -j2 of a generated C project, then the editors that replace a file through a
# temporary one (sed -i, perl -pi), patch, sort -o. $D is a fresh directory; $RUN_PROGRAMS
# says whether a program built there can be executed and $KERNEL_OBJECTS whether a fifo can
# be made there (both need the kernel: not with the ring alone).
set -u
cd "$D"
mkdir proj && cd proj
for i in 1 2 3 4 5 6; do printf 'int f%d(void) { return %d; }\n' "$i" "$i" > "f$i.c"; done
{
    echo '#include <stdio.h>'
    echo 'int f1(void), f2(void), f3(void), f4(void), f5(void), f6(void);'
    echo 'int main(void) { printf("%d\n", f1() + f2() + f3() + f4() + f5() + f6()); return 0; }'
} > main.c
printf 'OBJS = main.o f1.o f2.o f3.o f4.o f5.o f6.o\nprog: $(OBJS)\n\tcc -o $@ $(OBJS)\n%%.o: %%.c\n\tcc -c -o $@ $<\n' > Makefile
make -j2 -s; echo "make: $?"
ls
make -s; echo "make again: $?"
touch f3.c; make -j2 2>&1 | sort; echo "make after touch: $?"
if [ "$RUN_PROGRAMS" = 1 ]; then ./prog; echo "run: $?"; fi
cd ..
printf 'b\na\nc\n' > text
sed -i 's/a/A/' text; cat text
sed -i.bak 's/b/B/' text; cat text text.bak
perl -pi -e 's/c/C/' text; cat text
perl -pi.orig -e 's/A/a/' text; cat text text.orig
sort -o text text; cat text
cp text new; echo D >> new; diff -u text new > p.diff; echo "diff: $?"
patch text < p.diff; echo "patch: $?"; cat text
patch -R text < p.diff; echo "patch -R: $?"; cat text
rm p.diff   # its header holds the files' times
ls
if [ "${KERNEL_OBJECTS:-0}" = 1 ]; then
    mkfifo fifo; ls -l fifo | cut -c1
    (echo through the fifo > fifo &); cat fifo
fi
