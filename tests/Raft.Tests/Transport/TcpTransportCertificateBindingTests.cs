using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Raft.Tests.Transport;

/// <summary>
/// Mutual TLS with the node id bound to the certificate (NodeIdFromCertificate) and the cluster CA
/// pinned (CreateMutualTlsPinnedToCa): a certificate can speak only for its own node, and only
/// certificates from the cluster CA are accepted.
/// </summary>
public sealed class TcpTransportCertificateBindingTests : IDisposable
{
    private static readonly Func<X509Certificate2, int?> ById = TcpTransportOptions.NodeIdFromCommonName();
    private readonly X509Certificate2 _ca;
    private readonly X509Certificate2 _node1;
    private readonly X509Certificate2 _node2;
    private readonly X509Certificate2 _node3;
    private readonly X509Certificate2 _otherCa;
    private readonly X509Certificate2 _foreignNode2; // "CN=node-2", but from another CA.

    public TcpTransportCertificateBindingTests()
    {
        _ca = CreateCa("cluster-ca");
        _node1 = CreateNode(_ca, "node-1");
        _node2 = CreateNode(_ca, "node-2");
        _node3 = CreateNode(_ca, "node-3");
        _otherCa = CreateCa("other-ca");
        _foreignNode2 = CreateNode(_otherCa, "node-2");
    }

    public void Dispose()
    {
        foreach (var certificate in new[] { _ca, _node1, _node2, _node3, _otherCa, _foreignNode2 })
            certificate.Dispose();
    }

    [Fact]
    public async Task Nodes_with_their_own_certificates_exchange_every_message_type()
    {
        var (a, sinkA, b, sinkB) = await TcpTransportLoopbackTests.StartPairAsync(Options(_node1), Options(_node2));
        await using (a)
        await using (b)
        {
            await TcpTransportLoopbackTests.AssertExchangeAsync(a, sinkA, b, sinkB);
        }
    }

    [Fact]
    public async Task A_node_holding_node_3s_certificate_cannot_claim_id_2()
    {
        var log = new CollectingLoggerFactory();
        // "Node 2" here is an insider with node 3's valid certificate, claiming id 2.
        var (a, sinkA, impostor, _) = await TcpTransportLoopbackTests.StartPairAsync(Options(_node1), Options(_node3), logA: log);
        await using (a)
        await using (impostor)
        {
            impostor.Send(new RequestVoteResponse(2, 1, 9, Granted: true));
            await log.WaitForAsync(3003, "node 3's, but it claims to be node 2");
            Assert.False(sinkA.TryTake(out _), "nothing from the impostor may be delivered");
        }
    }

    [Fact]
    public async Task A_connector_refuses_a_listener_whose_certificate_is_another_nodes()
    {
        var log = new CollectingLoggerFactory();
        // Node 1 believes node 2 listens there, but the listener holds node 3's certificate.
        var (a, _, impostor, sinkImpostor) = await TcpTransportLoopbackTests.StartPairAsync(Options(_node1), Options(_node3), logA: log);
        await using (a)
        await using (impostor)
        {
            a.Send(new TimeoutNow(1, 2, 1));
            await log.WaitForAsync(3011, "node 3's, but it claims to be node 2");
            Assert.False(sinkImpostor.TryTake(out _));
        }
    }

    [Fact]
    public async Task A_certificate_from_another_ca_is_refused_even_with_the_right_name()
    {
        var log = new CollectingLoggerFactory();
        var (a, sinkA, foreign, _) = await TcpTransportLoopbackTests.StartPairAsync(Options(_node1), Options(_foreignNode2, ca: _otherCa), logA: log);
        await using (a)
        await using (foreign)
        {
            foreign.Send(new TimeoutNow(2, 1, 1));
            await log.WaitForAsync(3003, "TLS");
            Assert.False(sinkA.TryTake(out _));
        }
    }

    [Fact]
    public void The_pinned_ca_callback_accepts_only_the_cluster_ca()
    {
        var validate = TcpTransportOptions.CreatePinnedCaValidationCallback(_ca);
        // The OS-built chain ends in an untrusted root for these test CAs; the callback builds its own.
        Assert.True(validate(this, _node2, null, SslPolicyErrors.RemoteCertificateChainErrors));
        Assert.False(validate(this, _foreignNode2, null, SslPolicyErrors.RemoteCertificateChainErrors));
        Assert.False(validate(this, _otherCa, null, SslPolicyErrors.None));
        Assert.False(validate(this, null, null, SslPolicyErrors.RemoteCertificateNotAvailable));
        Assert.False(validate(this, _node2, null, SslPolicyErrors.RemoteCertificateNameMismatch));
    }

    [Theory]
    [InlineData("node-3", 3)]
    [InlineData("node-12", 12)]
    [InlineData("node-0", null)]
    [InlineData("node-", null)]
    [InlineData("node-3x", null)]
    [InlineData("node--3", null)]
    [InlineData("Node-3", null)]
    [InlineData("stranger", null)]
    public void NodeIdFromCommonName_reads_only_the_exact_pattern(string commonName, int? expected)
    {
        using var certificate = CreateNode(_ca, commonName);
        Assert.Equal(expected, ById(certificate));
    }

    [Fact]
    public void NodeIdFromCertificate_requires_mutual_tls()
    {
        var plain = TcpTransportLoopbackTests.Options(nodeIdFromCertificate: ById);
        Assert.Contains("needs mutual TLS", Assert.Throws<ArgumentException>(plain.Validate).Message, StringComparison.Ordinal);
        var (server, client) = TcpTransportOptions.CreateMutualTlsPinnedToCa(_ca, _node1, "localhost");
        server.ClientCertificateRequired = false;
        var oneWay = TcpTransportLoopbackTests.Options(serverTls: server, clientTls: client, nodeIdFromCertificate: ById);
        Assert.Contains("ClientCertificateRequired", Assert.Throws<ArgumentException>(oneWay.Validate).Message, StringComparison.Ordinal);
    }

    /// <summary>Settings for a node presenting <paramref name="nodeCertificate"/> and trusting only <paramref name="ca"/> (the cluster CA unless stated).</summary>
    private TcpTransportOptions Options(X509Certificate2 nodeCertificate, X509Certificate2? ca = null)
    {
        var (server, client) = TcpTransportOptions.CreateMutualTlsPinnedToCa(ca ?? _ca, nodeCertificate, "localhost");
        return TcpTransportLoopbackTests.Options(serverTls: server, clientTls: client, nodeIdFromCertificate: ById);
    }

    private static X509Certificate2 CreateCa(string name)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(certificateAuthority: true, hasPathLengthConstraint: true, pathLengthConstraint: 0, critical: true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, critical: true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, critical: false));
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-10), DateTimeOffset.UtcNow.AddDays(2));
    }

    private static X509Certificate2 CreateNode(X509Certificate2 ca, string name)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(certificateAuthority: false, hasPathLengthConstraint: false, pathLengthConstraint: 0, critical: true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            [new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], critical: false)); // server and client auth
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("localhost");
        request.CertificateExtensions.Add(names.Build());
        using var issued = request.Create(ca, DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1), RandomNumberGenerator.GetBytes(8));
        using var withKey = issued.CopyWithPrivateKey(key);
        // Round-trip through PFX so SslStream on Linux gets a usable private key.
        return X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pfx), password: null);
    }
}
