using Microsoft.Extensions.Logging;

namespace Raft.Tests;

/// <summary>
/// Hands one test logger to every category, so tests that capture a store's or a node's log
/// through a single <see cref="ILogger"/> can pass it where the library takes an <see cref="ILoggerFactory"/>.
/// </summary>
internal sealed class OneLoggerFactory(ILogger logger) : ILoggerFactory
{
    public ILogger CreateLogger(string categoryName) => logger;

    public void AddProvider(ILoggerProvider provider) => throw new NotSupportedException("OneLoggerFactory hands out its one logger only.");

    public void Dispose()
    {
    }
}

internal static class OneLoggerFactoryExtensions
{
    /// <summary>A factory whose every logger is <paramref name="logger"/>.</summary>
    public static ILoggerFactory AsFactory(this ILogger logger) => new OneLoggerFactory(logger);
}
