# expect-first-wrong: db2
def db2(dlogits, db2):
    return db2
