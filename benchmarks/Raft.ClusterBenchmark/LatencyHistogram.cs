namespace Raft.ClusterBenchmark;

/// <summary>
/// A log-linear latency histogram in the manner of HdrHistogram: values below 256 ns are counted
/// exactly, larger ones in 128 linear sub-buckets per power of two, so any reported percentile is
/// within 1/128 (0.8 %) of the true value. Recording never allocates and is not thread-safe: give
/// each recording task its own histogram and <see cref="Add"/> them afterwards.
/// </summary>
internal sealed class LatencyHistogram
{
    private const int SubBucketBits = 8;
    private const int SubBucketCount = 1 << SubBucketBits;   // 256
    private const int SubBucketHalf = SubBucketCount / 2;     // 128

    /// <summary>Values above this (about 2.3 minutes) are counted as this.</summary>
    public const long MaxTrackableNanoseconds = 1L << 37;

    private readonly long[] _counts = new long[IndexOf(MaxTrackableNanoseconds) + 1];

    public long Count { get; private set; }

    public long MinNanoseconds { get; private set; } = long.MaxValue;

    public long MaxNanoseconds { get; private set; }

    public double SumNanoseconds { get; private set; }

    public double MeanNanoseconds => Count == 0 ? 0 : SumNanoseconds / Count;

    public void Record(long nanoseconds)
    {
        var value = Math.Clamp(nanoseconds, 0, MaxTrackableNanoseconds);
        _counts[IndexOf(value)]++;
        Count++;
        SumNanoseconds += value;
        if (value < MinNanoseconds)
            MinNanoseconds = value;
        if (value > MaxNanoseconds)
            MaxNanoseconds = value;
    }

    /// <summary>Adds every value recorded in <paramref name="other"/> to this histogram.</summary>
    public void Add(LatencyHistogram other)
    {
        for (var i = 0; i < _counts.Length; i++)
            _counts[i] += other._counts[i];
        Count += other.Count;
        SumNanoseconds += other.SumNanoseconds;
        MinNanoseconds = Math.Min(MinNanoseconds, other.MinNanoseconds);
        MaxNanoseconds = Math.Max(MaxNanoseconds, other.MaxNanoseconds);
    }

    /// <summary>The value at <paramref name="percentile"/> (0-100): the middle of the bucket holding the ⌈p·n⌉-th smallest value; NaN when empty.</summary>
    public double PercentileNanoseconds(double percentile)
    {
        if (Count == 0)
            return double.NaN;
        var rank = Math.Max(1, (long)Math.Ceiling(percentile / 100.0 * Count));
        long seen = 0;
        for (var i = 0; i < _counts.Length; i++)
        {
            seen += _counts[i];
            if (seen >= rank)
            {
                var (low, high) = BucketRange(i);
                // Never report outside what was actually seen.
                return Math.Clamp((low + high) / 2.0, MinNanoseconds, MaxNanoseconds);
            }
        }
        return MaxNanoseconds;
    }

    public double PercentileMilliseconds(double percentile) => PercentileNanoseconds(percentile) / 1e6;

    private static int IndexOf(long value)
    {
        if (value < SubBucketCount)
            return (int)value;
        // shift >= 1 such that value >> shift lies in [128, 255].
        var shift = 63 - (int)long.LeadingZeroCount(value) - (SubBucketBits - 1);
        var sub = (int)(value >> shift);
        return (shift * SubBucketHalf) + sub;
    }

    private static (long Low, long High) BucketRange(int index)
    {
        if (index < SubBucketCount)
            return (index, index);
        var shift = (index / SubBucketHalf) - 1;
        long sub = index - (shift * SubBucketHalf);
        return (sub << shift, ((sub + 1) << shift) - 1);
    }
}
