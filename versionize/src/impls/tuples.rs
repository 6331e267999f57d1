//! Tuples of 1 to 12 elements: the elements in order.

use std::io::{Read, Write};

use crate::limits::EncodeScope;
use crate::{DecodeScope, VersionMap, Versionize, VersionizeResult};

macro_rules! impl_tuple {
    ($($name:ident $index:tt),+) => {
        impl<$($name: Versionize),+> Versionize for ($($name,)+) {
            #[inline]
            fn serialize<W: Write>(&self, writer: &mut W, map: &VersionMap, v: u16) -> VersionizeResult<()> {
                // The decoder's scope, mirrored.
                let _scope = EncodeScope::enter_holding(map.limits(), size_of::<Self>())?;
                $(self.$index.serialize(writer, map, v)?;)+
                Ok(())
            }

            #[inline]
            fn deserialize<R: Read>(reader: &mut R, map: &VersionMap, v: u16) -> VersionizeResult<Self> {
                // Several elements: one scope, so that they share the budget of one decode.
                let _scope = DecodeScope::enter_holding(map.limits(), size_of::<Self>())?;
                Ok(($($name::deserialize(reader, map, v)?,)+))
            }

            fn version() -> u16 {
                1
            }

            fn describe(builder: &mut crate::schema::SchemaBuilder<'_>) -> String {
                let names: Vec<String> = vec![$(builder.describe::<$name>()),+];
                format!("({},)", names.join(", "))
            }
        }
    };
}

impl_tuple!(A 0);
impl_tuple!(A 0, B 1);
impl_tuple!(A 0, B 1, C 2);
impl_tuple!(A 0, B 1, C 2, D 3);
impl_tuple!(A 0, B 1, C 2, D 3, E 4);
impl_tuple!(A 0, B 1, C 2, D 3, E 4, F 5);
impl_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
impl_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
impl_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);
impl_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9);
impl_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10);
impl_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11);
