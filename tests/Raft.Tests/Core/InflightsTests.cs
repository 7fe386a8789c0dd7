using FsCheck;
using FsCheck.Xunit;

namespace Raft.Tests.Core;

/// <summary><see cref="Inflights"/>: the per-follower window of unacknowledged appends (etcd tracker/inflights_test.go).</summary>
public sealed class InflightsTests
{
    [Fact]
    public void New_IsEmptyAndNotFull()
    {
        var inflights = new Inflights(3);

        Assert.Equal(0, inflights.Count);
        Assert.Equal(3, inflights.Capacity);
        Assert.False(inflights.Full);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    public void Capacity_MustBePositive(int capacity)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new Inflights(capacity));
    }

    [Fact]
    public void AddingCapacityEntries_MakesItFull()
    {
        var inflights = new Inflights(3);

        inflights.Add(1);
        inflights.Add(2);
        Assert.False(inflights.Full);
        inflights.Add(3);

        Assert.True(inflights.Full);
        Assert.Equal(3, inflights.Count);
    }

    [Fact]
    public void FreeLE_ForgetsEveryMessageUpToTheAcknowledgedIndex()
    {
        var inflights = new Inflights(5);
        foreach (var last in new long[] { 2, 4, 6, 8, 10 })
            inflights.Add(last);

        inflights.FreeLE(5);
        Assert.Equal(3, inflights.Count); // 6, 8, 10 remain
        inflights.FreeLE(5);
        Assert.Equal(3, inflights.Count); // idempotent
        inflights.FreeLE(1);
        Assert.Equal(3, inflights.Count); // stale acknowledgement
        inflights.FreeLE(8);
        Assert.Equal(1, inflights.Count);
        inflights.FreeLE(100);
        Assert.Equal(0, inflights.Count);
    }

    [Fact]
    public void FreeFirstOne_OpensTheWindowByOne()
    {
        var inflights = new Inflights(2);
        inflights.Add(1);
        inflights.Add(2);

        inflights.FreeFirstOne();

        Assert.False(inflights.Full);
        Assert.Equal(1, inflights.Count);
        inflights.FreeLE(1);
        Assert.Equal(1, inflights.Count); // 1 was the one freed; 2 is still in flight
        inflights.FreeFirstOne();
        inflights.FreeFirstOne(); // on empty: no-op
        Assert.Equal(0, inflights.Count);
    }

    [Fact]
    public void RingBuffer_WrapsAroundCorrectly()
    {
        var inflights = new Inflights(4);
        long next = 1;
        for (var round = 0; round < 10; round++)
        {
            while (!inflights.Full)
                inflights.Add(next++);
            inflights.FreeLE(next - 3); // acknowledge all but the last two
            Assert.Equal(2, inflights.Count);
        }
        inflights.FreeLE(next - 2);
        Assert.Equal(1, inflights.Count);
    }

    [Fact]
    public void Reset_EmptiesTheWindow()
    {
        var inflights = new Inflights(2);
        inflights.Add(1);
        inflights.Add(2);

        inflights.Reset();

        Assert.Equal(0, inflights.Count);
        Assert.False(inflights.Full);
    }

    // Against a queue model: random adds (increasing indexes), acknowledgements and frees.
    [Property(MaxTest = 500)]
    public bool BehavesLikeABoundedQueue(PositiveInt capacityRaw, byte[] ops)
    {
        var capacity = capacityRaw.Get % 8 + 1;
        var inflights = new Inflights(capacity);
        var model = new Queue<long>();
        long next = 1;
        foreach (var op in ops)
        {
            switch (op % 4)
            {
                case 0:
                case 1:
                    next += op % 3;
                    if (model.Count == capacity)
                        model.Dequeue();
                    model.Enqueue(next);
                    inflights.Add(next);
                    next++;
                    break;
                case 2:
                    var ack = next - 1 - op % 5;
                    while (model.Count > 0 && model.Peek() <= ack)
                        model.Dequeue();
                    inflights.FreeLE(ack);
                    break;
                default:
                    if (model.Count > 0)
                        model.Dequeue();
                    inflights.FreeFirstOne();
                    break;
            }
            if (inflights.Count != model.Count || inflights.Full != (model.Count == capacity))
                return false;
        }
        return true;
    }
}
