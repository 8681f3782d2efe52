#!/usr/bin/env python3
"""Embeds a text file as a C string: embed.py SYMBOL INPUT OUTPUT."""
import sys

sym, src, dst = sys.argv[1:4]
data = open(src, 'rb').read()
with open(dst, 'w') as f:
    f.write('/* generated from %s by scripts/embed.py; do not edit */\n' % src.split('/')[-1])
    f.write('const char %s[] =\n' % sym)
    for i in range(0, len(data), 64):
        chunk = data[i:i + 64]
        f.write('    "' + ''.join('\\x%02x' % b for b in chunk) + '"\n')
    f.write(';\n')
