using System.Diagnostics.CodeAnalysis;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Raft.Hosting;

/// <summary>Registers a Raft node with a generic host.</summary>
public static class RaftServiceCollectionExtensions
{
    /// <summary>
    /// Runs a Raft node in this host, its settings bound from <paramref name="configuration"/>
    /// (usually <c>builder.Configuration.GetSection("Raft")</c>) and checked when the host starts.
    /// </summary>
    /// <typeparam name="TStateMachine">The replicated state machine, resolved from the container (registered as a singleton here unless already registered).</typeparam>
    /// <param name="services">The host's services.</param>
    /// <param name="configuration">The section holding <see cref="RaftHostingOptions"/>.</param>
    /// <returns><paramref name="services"/>.</returns>
    /// <exception cref="InvalidOperationException">A Raft node is already registered (one per host).</exception>
    public static IServiceCollection AddRaftNode<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicConstructors)] TStateMachine>(this IServiceCollection services, IConfiguration configuration)
        where TStateMachine : class, IStateMachine
    {
        ArgumentNullException.ThrowIfNull(configuration);
        return services.AddRaftNodeCore<TStateMachine>().Bind(configuration).Services;
    }

    /// <summary>Runs a Raft node in this host, its settings set by <paramref name="configure"/> and checked when the host starts.</summary>
    /// <typeparam name="TStateMachine">The replicated state machine, resolved from the container (registered as a singleton here unless already registered).</typeparam>
    /// <param name="services">The host's services.</param>
    /// <param name="configure">Sets <see cref="RaftHostingOptions"/>; runs after any other configuration of them.</param>
    /// <returns><paramref name="services"/>.</returns>
    /// <exception cref="InvalidOperationException">A Raft node is already registered (one per host).</exception>
    public static IServiceCollection AddRaftNode<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicConstructors)] TStateMachine>(this IServiceCollection services, Action<RaftHostingOptions> configure)
        where TStateMachine : class, IStateMachine
    {
        ArgumentNullException.ThrowIfNull(configure);
        return services.AddRaftNodeCore<TStateMachine>().Configure(configure).Services;
    }

    /// <summary>
    /// Adds the Raft node's health check (<see cref="RaftHealthCheck"/>): Unhealthy when not
    /// started or faulted, Degraded without a known leader or when applies lag commits by more than
    /// <paramref name="maxApplyLag"/>.
    /// </summary>
    /// <param name="builder">From <c>services.AddHealthChecks()</c>.</param>
    /// <param name="name">The check's name. The default is "raft".</param>
    /// <param name="maxApplyLag">The largest commit - applied distance still healthy. The default is <see cref="RaftHealthCheck.DefaultMaxApplyLag"/>.</param>
    /// <param name="tags">Tags to filter checks by (for example "ready").</param>
    /// <returns><paramref name="builder"/>.</returns>
    public static IHealthChecksBuilder AddRaftHealthCheck(this IHealthChecksBuilder builder, string name = "raft", long maxApplyLag = RaftHealthCheck.DefaultMaxApplyLag, IEnumerable<string>? tags = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentOutOfRangeException.ThrowIfNegative(maxApplyLag);
        builder.Services.TryAddSingleton<RaftNodeAccessor>();
        return builder.Add(new HealthCheckRegistration(name, sp => new RaftHealthCheck(sp.GetRequiredService<RaftNodeAccessor>(), maxApplyLag), failureStatus: null, tags));
    }

    private static OptionsBuilder<RaftHostingOptions> AddRaftNodeCore<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicConstructors)] TStateMachine>(this IServiceCollection services)
        where TStateMachine : class, IStateMachine
    {
        ArgumentNullException.ThrowIfNull(services);
        if (services.Any(d => d.ServiceType == typeof(RaftNodeMarker)))
            throw new InvalidOperationException("AddRaftNode was already called on these services: a host runs one Raft node.");
        services.AddSingleton<RaftNodeMarker>();
        services.TryAddSingleton<TStateMachine>();
        services.TryAddSingleton<RaftNodeAccessor>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<RaftHostingOptions>, RaftHostingOptionsValidator>());
        services.AddSingleton<IHostedService>(sp => new RaftHostedService(
            sp.GetRequiredService<TStateMachine>(),
            sp.GetRequiredService<IOptions<RaftHostingOptions>>(),
            sp.GetRequiredService<RaftNodeAccessor>(),
            sp.GetRequiredService<IHostApplicationLifetime>(),
            sp));
        return services.AddOptions<RaftHostingOptions>().ValidateOnStart();
    }

    private sealed class RaftNodeMarker;
}
