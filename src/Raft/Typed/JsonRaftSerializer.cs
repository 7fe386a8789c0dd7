using System.Buffers;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace Raft;

/// <summary>
/// A <see cref="IRaftSerializer{T}"/> that writes UTF-8 JSON with System.Text.Json (part of .NET: no
/// package to add). It takes the type's <see cref="JsonTypeInfo{T}"/>, from a source-generated
/// <c>JsonSerializerContext</c> (trimming and AOT safe) or from
/// <c>JsonSerializerOptions.GetTypeInfo</c>.
/// </summary>
/// <typeparam name="T">The type of the values.</typeparam>
public sealed class JsonRaftSerializer<T> : IRaftSerializer<T>
{
    private readonly JsonTypeInfo<T> _typeInfo;

    /// <summary>Creates the serializer.</summary>
    /// <param name="typeInfo">The JSON contract of <typeparamref name="T"/>.</param>
    public JsonRaftSerializer(JsonTypeInfo<T> typeInfo)
    {
        ArgumentNullException.ThrowIfNull(typeInfo);
        _typeInfo = typeInfo;
    }

    /// <inheritdoc />
    public void Serialize(T value, IBufferWriter<byte> destination)
    {
        using var writer = new Utf8JsonWriter(destination);
        JsonSerializer.Serialize(writer, value, _typeInfo);
    }

    /// <inheritdoc />
    /// <exception cref="JsonException">The bytes are not JSON of <typeparamref name="T"/>, or are the JSON <c>null</c> for a type that cannot be null.</exception>
    public T Deserialize(ReadOnlySpan<byte> data)
    {
        var value = JsonSerializer.Deserialize(data, _typeInfo);
        if (value is null && default(T) is null && !IsNullable)
            throw new JsonException($"The JSON is null, not a {typeof(T).Name}.");
        return value!;
    }

    // Only Nullable<T> value types may be null here; a null reference is refused (commands are values).
    private static bool IsNullable => Nullable.GetUnderlyingType(typeof(T)) is not null;
}
