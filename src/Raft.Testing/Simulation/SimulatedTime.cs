namespace Raft.Testing.Simulation;

/// <summary>
/// The simulator's virtual clock, as a <see cref="TimeProvider"/>: time moves only when the
/// simulator says so. One simulated tick is <see cref="TickLength"/>. It creates no timers: the
/// simulator ticks each node itself.
/// </summary>
internal sealed class SimulatedTime : TimeProvider
{
    public static readonly TimeSpan TickLength = TimeSpan.FromMilliseconds(10);

    private static readonly DateTimeOffset Epoch = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    // Virtual time in ticks.
    public double Now { get; set; }

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override long GetTimestamp() => (long)(Now * TickLength.Ticks);

    public override DateTimeOffset GetUtcNow() => Epoch + TimeSpan.FromTicks(GetTimestamp());

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period) =>
        throw new NotSupportedException("The simulator ticks its nodes itself; nothing in a simulated node may create a timer.");
}
