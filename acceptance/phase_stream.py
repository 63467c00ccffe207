async def run(d, checks):  # placeholder, filled below
    pass
