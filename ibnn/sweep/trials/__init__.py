"""Running a sweep's trials under Ray Tune: who a trial is (``identity``), the trainable and its
one epoch loop for solo and packed trials, packing, the rows each trial writes (``writer``), the
Ray session it runs in, its checkpoints, and the driver's progress line."""
