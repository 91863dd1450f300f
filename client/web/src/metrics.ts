// Timings the browser test and the bench read (window.taskgroveMetrics): when the snapshot
// arrived, when it was drawn, how many events were applied.
export const metrics = {
  /** The first message of the snapshot arrived (the tasks still to decode and draw). */
  snapshotFirstChunkAt: 0,
  /** The whole snapshot arrived and was decoded. */
  snapshotAt: 0,
  snapshotTasks: 0,
  renderedAt: 0,
  paintedAt: 0,
  events: 0,
  firstEventAt: 0,
  lastEventAt: 0,
  /** The runs page: events applied, and the frames that applied them. */
  runsEvents: 0,
  runsFlushes: 0,
};

(window as unknown as { taskgroveMetrics: typeof metrics }).taskgroveMetrics = metrics;
