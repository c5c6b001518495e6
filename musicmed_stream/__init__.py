"""musicmed-stream: music medicine along the valence-arousal circumplex (iso principle).

Pipeline, one subpackage per stage::

    emotion  ->  planner  ->  engines  ->  chain  ->  player  ->  control
    (circumplex)  (iso path)   (clips)    (post-processing) (sinks)  (websocket)

``service`` ties the stages together into the asyncio daemon, ``render`` into an offline
session, ``evaluation`` scores what came out.
"""

__version__ = "0.1.0"
