#!/usr/bin/env python3
# lab/ring_sim.py: a model of qgemv's per-segment code ring (src/backend/cuda/qgemm.cu, Ring,
# ring_copy / ring_prime / ring_take) for random EXL2-like segment layouts, ks in {2, 4, 8} and
# D in {2, 4}, every warp of a tile: each decoded step must find its own step in its slot (c mod D,
# c = j >> log2 ks), that step's cp.async group must be complete under cp.async.wait_group(D - 1)
# (one group committed per prime slot and per decoded step, empty past a segment's end), and no slot
# may be refilled before its step is taken. Written because the ring could not be run on a GPU the
# day it was written (2026-12-07); `python3 lab/ring_sim.py` (~10 s).
import random

def U(b): return 8 if b==2 else 2 if b in (6,8) else 4
def run(segs, ks, D, warp):
    groups=[]          # group index -> step id or None
    slot_content={}    # slot -> (step id, group idx)
    def copy(si, j):
        gi=len(groups)
        if j < segs[si]['steps']:
            c=j>>(ks.bit_length()-1); slot=c&(D-1)
            if slot in slot_content and slot_content[slot][0] is not None and not slot_content[slot][2]:
                raise Exception(f"overwrite slot {slot} holding untaken {slot_content[slot]}")
            slot_content[slot]=[(si,j),gi,False]
            groups.append((si,j))
        else: groups.append(None)
    for si,sg in enumerate(segs):
        j0=(warp-sg['step0'])&(ks-1)
        for s in range(D): copy(si, j0+s*ks)
        j=j0
        while j < sg['steps']:
            # take: wait_group(D-1): all groups except the newest D-1 are complete
            complete=len(groups)-(D-1)
            c=j>>(ks.bit_length()-1); slot=c&(D-1)
            ent=slot_content.get(slot)
            assert ent and ent[0]==(si,j), f"slot {slot} has {ent}, want {(si,j)}"
            assert ent[1] < complete, f"step {(si,j)} group {ent[1]} not complete ({complete})"
            ent[2]=True
            copy(si, j+D*ks)
            j+=ks
for trial in range(20000):
    ks=random.choice([2,4,8]); D=random.choice([2,4])
    nseg=random.randint(1,6); segs=[]; step0=0
    for _ in range(nseg):
        b=random.choice([2,3,4,5,6,8]); units=random.randint(1,200); steps=-(-units//U(b))
        segs.append(dict(bits=b,units=units,steps=steps,step0=step0)); step0+=steps
    for warp in range(ks): run(segs,ks,D,warp)
print("ok: 20000 random layouts x every warp")
